#ifndef FERRY_CCRYPTO_SHIM_H
#define FERRY_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#endif
