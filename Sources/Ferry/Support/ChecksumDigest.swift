internal import CCrypto

/// The digest of one request body for tus's checksum extension: SHA-1 (which tus requires), SHA-256
/// or MD5, by libcrypto.
///
/// Thread-safety: used by one request, on its event-loop thread and then its worker, never at once.
final class ChecksumDigest: @unchecked Sendable {
    enum Algorithm: String, CaseIterable, Sendable {
        case sha1, sha256, md5

        var digestLength: Int {
            switch self {
            case .sha1: return 20
            case .sha256: return 32
            case .md5: return 16
            }
        }
    }

    let algorithm: Algorithm
    private var sha1 = SHA_CTX()
    private var sha256 = SHA256_CTX()
    private var md5 = MD5_CTX()

    init(_ algorithm: Algorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .sha1: CCrypto_sha1_init(&sha1)
        case .sha256: CCrypto_sha256_init(&sha256)
        case .md5: CCrypto_md5_init(&md5)
        }
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        switch algorithm {
        case .sha1: CCrypto_sha1_update(&sha1, base, bytes.count)
        case .sha256: CCrypto_sha256_update(&sha256, base, bytes.count)
        case .md5: CCrypto_md5_update(&md5, base, bytes.count)
        }
    }

    /// The raw digest. Call once.
    func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: algorithm.digestLength)
        switch algorithm {
        case .sha1: CCrypto_sha1_final(&digest, &sha1)
        case .sha256: CCrypto_sha256_final(&digest, &sha256)
        case .md5: CCrypto_md5_final(&digest, &md5)
        }
        return digest
    }
}
