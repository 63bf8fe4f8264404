#ifndef FERRY_CCRYPTO_SHIM_H
#define FERRY_CCRYPTO_SHIM_H

/* The one-shot digest functions (SHA256_Init and friends) are deprecated in OpenSSL 3 in favour of
   EVP, but they run the same SHA-NI/AVX code without starting the provider machinery, which costs
   ~2 MiB of resident memory per process (measured: 3.0 against 5.0 MiB for a 1 GiB digest). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <openssl/md5.h>
#include <openssl/rand.h>

static inline int CCrypto_sha256_init(SHA256_CTX *context) { return SHA256_Init(context); }
static inline int CCrypto_sha256_update(SHA256_CTX *context, const void *data, size_t length) {
    return SHA256_Update(context, data, length);
}
static inline int CCrypto_sha256_final(unsigned char *digest, SHA256_CTX *context) {
    return SHA256_Final(digest, context);
}

static inline int CCrypto_sha1_init(SHA_CTX *context) { return SHA1_Init(context); }
static inline int CCrypto_sha1_update(SHA_CTX *context, const void *data, size_t length) {
    return SHA1_Update(context, data, length);
}
static inline int CCrypto_sha1_final(unsigned char *digest, SHA_CTX *context) { return SHA1_Final(digest, context); }

static inline int CCrypto_md5_init(MD5_CTX *context) { return MD5_Init(context); }
static inline int CCrypto_md5_update(MD5_CTX *context, const void *data, size_t length) {
    return MD5_Update(context, data, length);
}
static inline int CCrypto_md5_final(unsigned char *digest, MD5_CTX *context) { return MD5_Final(digest, context); }

#endif
