internal import CCrypto

/// An incremental SHA-256 digest computed by OpenSSL's libcrypto (its SHA-NI code on this hardware).
///
/// Thread-safety: `@unchecked Sendable` so an upload can carry it from the event-loop thread (which
/// feeds it) to the worker thread (which finalises it); the two never use it at the same time.
final class SHA256: @unchecked Sendable {
    private var context = SHA256_CTX()

    init() {
        CCrypto_sha256_init(&context)
    }

    /// Resumes from a saved `state`; nil if the bytes are not a state of this build's libcrypto.
    init?(state: [UInt8]) {
        guard state.count == MemoryLayout<SHA256_CTX>.size else { return nil }
        withUnsafeMutableBytes(of: &context) { $0.copyBytes(from: state) }
    }

    /// The running state, to be saved and resumed (a resumable upload's digest survives restarts).
    var state: [UInt8] {
        withUnsafeBytes(of: context) { Array($0) }
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        CCrypto_sha256_update(&context, base, bytes.count)
    }

    /// The digest as lowercase hex. Call once.
    func finalizeHex() -> String {
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        CCrypto_sha256_final(&digest, &context)
        return Hex.encode(digest)
    }
}

/// Lowercase hexadecimal.
enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `count` random bytes as hex, for names that must not collide (temporary files, multipart
    /// boundaries). Not for secrets: those will come from libcrypto's RAND_bytes. The system generator
    /// reads the kernel's getrandom without starting libcrypto's DRBG, which costs ~1 MiB of memory.
    static func random(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return encode((0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }
}
