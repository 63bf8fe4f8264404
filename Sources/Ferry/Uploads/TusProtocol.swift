import HTTPServer

/// The tus 1.0.0 request headers, parsed strictly. Pure functions, table-tested.
enum TusProtocol {
    static let version = "1.0.0"
    static let extensions = [
        "creation", "creation-with-upload", "creation-defer-length", "termination", "expiration", "checksum",
        "concatenation", "concatenation-unfinished",
    ]
    static let contentType = "application/offset+octet-stream"

    /// A non-negative decimal integer with no sign, spaces or leading junk (`Upload-Length`, `Upload-Offset`).
    static func parseSize(_ text: String?, header: String) throws(HTTPError) -> UInt64? {
        guard let text else { return nil }
        guard !text.isEmpty, text.utf8.count <= 20, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = UInt64(text), value <= UInt64(Int64.max)
        else {
            throw HTTPError.badRequest(
                "bad_\(header.lowercased().replacingHyphens())",
                "\(header) must be a non-negative whole number of bytes, got '\(text.prefix(40))'.")
        }
        return value
    }

    /// `Upload-Checksum: <algorithm> <base64 digest>`: the algorithm and the expected digest.
    static func parseChecksum(_ header: String?) throws(HTTPError) -> (ChecksumDigest.Algorithm, [UInt8])? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", omittingEmptySubsequences: true)
        let supported = ChecksumDigest.Algorithm.allCases.map(\.rawValue).joined(separator: ", ")
        guard parts.count == 2, let algorithm = ChecksumDigest.Algorithm(rawValue: String(parts[0])) else {
            throw HTTPError.badRequest(
                "unsupported_checksum_algorithm",
                "Upload-Checksum must be '<algorithm> <base64 digest>' with one of: \(supported).")
        }
        guard let digest = Base64.decode(String(parts[1])), digest.count == algorithm.digestLength else {
            throw HTTPError.badRequest(
                "bad_checksum", "The Upload-Checksum digest is not a base64 \(algorithm.rawValue) digest.")
        }
        return (algorithm, digest)
    }

    /// One `Upload-Metadata` pair: the key and its decoded value (nil when the value was omitted).
    struct MetadataPair: Sendable, Equatable {
        let key: String
        let value: [UInt8]?

        var text: String? { value.flatMap { String(validating: $0, as: UTF8.self) } }
    }

    /// `key base64,key2 base64,...`: keys unique, non-empty, without spaces or commas; values base64.
    static func parseMetadata(_ header: String?) throws(HTTPError) -> [MetadataPair] {
        guard let header, !header.trimmingASCIIWhitespace().isEmpty else { return [] }
        guard header.utf8.count <= 16 * 1024 else {
            throw HTTPError.badRequest("bad_upload_metadata", "Upload-Metadata may be at most 16 KiB.")
        }
        var pairs: [MetadataPair] = []
        for item in header.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = String(item).trimmingASCIIWhitespace().split(separator: " ", omittingEmptySubsequences: false)
            guard let key = parts.first.map(String.init), !key.isEmpty, parts.count <= 2,
                key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
            else {
                throw HTTPError.badRequest(
                    "bad_upload_metadata",
                    "Upload-Metadata must be 'key base64value' pairs separated by commas; '\(item.prefix(40))' is not.")
            }
            guard !pairs.contains(where: { $0.key == key }) else {
                throw HTTPError.badRequest("bad_upload_metadata", "Upload-Metadata has the key '\(key)' twice.")
            }
            var value: [UInt8]?
            if parts.count == 2 {
                guard let decoded = Base64.decode(String(parts[1])) else {
                    throw HTTPError.badRequest(
                        "bad_upload_metadata", "The Upload-Metadata value of '\(key)' is not valid base64.")
                }
                value = decoded
            }
            pairs.append(MetadataPair(key: key, value: value))
        }
        return pairs
    }
}

extension String {
    fileprivate func replacingHyphens() -> String {
        String(map { $0 == "-" ? "_" : $0 })
    }
}

/// Standard base64 (RFC 4648 §4), with padding; strict.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func decode(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 4 == 0 else { return nil }
        var table = [Int16](repeating: -1, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = Int16(index) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count / 4 * 3)
        var index = 0
        while index < bytes.count {
            var values = [Int16](repeating: 0, count: 4)
            var padding = 0
            for offset in 0..<4 {
                let byte = bytes[index + offset]
                if byte == UInt8(ascii: "=") {
                    // Padding only at the very end, in the last one or two places.
                    guard index + 4 == bytes.count, offset >= 2 else { return nil }
                    padding += 1
                    values[offset] = 0
                } else {
                    guard padding == 0, table[Int(byte)] >= 0 else { return nil }
                    values[offset] = table[Int(byte)]
                }
            }
            let combined = Int(values[0]) << 18 | Int(values[1]) << 12 | Int(values[2]) << 6 | Int(values[3])
            out.append(UInt8((combined >> 16) & 0xFF))
            if padding < 2 { out.append(UInt8((combined >> 8) & 0xFF)) }
            if padding < 1 { out.append(UInt8(combined & 0xFF)) }
            index += 4
        }
        return out
    }

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value = 0
            for (offset, byte) in chunk.enumerated() { value |= Int(byte) << (16 - 8 * offset) }
            out.append(alphabet[(value >> 18) & 63])
            out.append(alphabet[(value >> 12) & 63])
            out.append(chunk.count > 1 ? alphabet[(value >> 6) & 63] : UInt8(ascii: "="))
            out.append(chunk.count > 2 ? alphabet[value & 63] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
