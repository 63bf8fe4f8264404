// Part headers of a multipart/form-data body, and the small header-value
// grammar pieces (parameters, quoted-strings, RFC 8187 ext-values) that the
// parser needs. Pure Swift standard library.

/// The headers of one part, parsed when the blank line that ends them is seen.
public struct MultipartPartHeaders: Sendable {
    /// Raw header lines of the part, in order, as (name, value) with the name as
    /// sent and the value stripped of surrounding whitespace.
    public var fields: [(name: String, value: String)]
    /// Content-Disposition `name` parameter (the form field name).
    public var name: String?
    /// Content-Disposition `filename*` (RFC 8187, percent-decoded) if present and
    /// decodable, else `filename`. Kept exactly as sent: paths are not stripped.
    public var filename: String?
    /// Content-Type of the part, if given.
    public var contentType: String?

    public init(fields: [(name: String, value: String)] = [], name: String? = nil,
                filename: String? = nil, contentType: String? = nil) {
        self.fields = fields
        self.name = name
        self.filename = filename
        self.contentType = contentType
    }

    /// The first field with this name (case-insensitive), if any.
    public func value(of field: String) -> String? {
        let wanted = field.lowercased()
        return fields.first { $0.name.lowercased() == wanted }?.value
    }

    /// Builds the headers from raw fields, reading Content-Disposition and Content-Type.
    init(parsing fields: [(name: String, value: String)]) {
        self.init(fields: fields)
        var sawDisposition = false
        for field in fields {
            switch field.name.lowercased() {
            case "content-disposition" where !sawDisposition:
                sawDisposition = true
                readDisposition(Array(field.value.utf8))
            case "content-type" where contentType == nil:
                contentType = field.value
            default:
                break
            }
        }
    }

    private mutating func readDisposition(_ value: [UInt8]) {
        var plain: String?
        var extended: String?
        var sawExtended = false
        for param in HeaderGrammar.parameters(value) {
            switch param.name {
            case "name" where name == nil:
                name = String(decoding: param.value, as: UTF8.self)
            case "filename" where plain == nil:
                plain = MultipartPartHeaders.unescapeFormName(String(decoding: param.value, as: UTF8.self))
            case "filename*" where !sawExtended:
                sawExtended = true
                extended = HeaderGrammar.decodeExtValue(param.value)
            default:
                break
            }
        }
        filename = extended ?? plain
    }

    /// Browsers and curl (following the WHATWG form encoding) write `"`, CR and LF in a quoted name as
    /// `%22`, `%0D` and `%0A`; any other `%` is literal (`90%hello.txt`), so only these three are undone.
    static func unescapeFormName(_ name: String) -> String {
        guard name.contains("%") else { return name }
        return name.replacingPercentEscape("%22", with: "\"")
            .replacingPercentEscape("%0D", with: "\r")
            .replacingPercentEscape("%0A", with: "\n")
    }
}

extension String {
    /// Replaces every occurrence of a `%XX` escape (hex digits in either case) with `replacement`.
    fileprivate func replacingPercentEscape(_ escape: String, with replacement: String) -> String {
        let target = Array(escape.uppercased().utf8)
        let bytes = Array(utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if index + 3 <= bytes.count, bytes[index] == UInt8(ascii: "%"),
                bytes[index + 1] == target[1], bytes[index + 2] & 0xDF == target[2] & 0xDF
            {
                out.append(contentsOf: replacement.utf8)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Error thrown for malformed or truncated multipart input.
public struct MultipartError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// Byte-level helpers for header values (RFC 9110 parameters, RFC 8187).
enum HeaderGrammar {
    static let space: UInt8 = 0x20, tab: UInt8 = 0x09, quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C, semicolon: UInt8 = 0x3B, equals: UInt8 = 0x3D

    @inline(__always) static func isWhitespace(_ b: UInt8) -> Bool { b == space || b == tab }

    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = bytes.startIndex, hi = bytes.endIndex
        while lo < hi, isWhitespace(bytes[lo]) { lo += 1 }
        while hi > lo, isWhitespace(bytes[hi - 1]) { hi -= 1 }
        return bytes[lo..<hi]
    }

    static func asciiLowercased(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Parameters after the first `;` of a header value: `; a=token; b="quoted \" string"`.
    /// Names are lowercased; values are returned with quoting removed. Lenient:
    /// parameters without `=` are skipped, an unterminated quoted-string runs to the end.
    static func parameters(_ v: [UInt8]) -> [(name: String, value: [UInt8])] {
        var result: [(name: String, value: [UInt8])] = []
        var i = v.firstIndex(of: semicolon) ?? v.count
        while i < v.count {
            // Skip separators and whitespace before a parameter name.
            while i < v.count, v[i] == semicolon || isWhitespace(v[i]) { i += 1 }
            let nameStart = i
            while i < v.count, v[i] != equals, v[i] != semicolon { i += 1 }
            guard i < v.count, v[i] == equals else { continue }
            let name = asciiLowercased(trimmed(v[nameStart..<i]))
            i += 1
            while i < v.count, isWhitespace(v[i]) { i += 1 }
            var value: [UInt8] = []
            if i < v.count, v[i] == quote {
                i += 1
                while i < v.count, v[i] != quote {
                    if v[i] == backslash, i + 1 < v.count { i += 1 }
                    value.append(v[i])
                    i += 1
                }
                // Skip the closing quote and anything up to the next ';'.
                while i < v.count, v[i] != semicolon { i += 1 }
            } else {
                let start = i
                while i < v.count, v[i] != semicolon { i += 1 }
                value = Array(trimmed(v[start..<i]))
            }
            if !name.isEmpty { result.append((name, value)) }
        }
        return result
    }

    /// RFC 8187 ext-value `charset'[language]'pct-encoded`. Supports UTF-8 and
    /// ISO-8859-1; nil for other charsets, bad escapes or invalid UTF-8.
    static func decodeExtValue(_ v: [UInt8]) -> String? {
        guard let q1 = v.firstIndex(of: 0x27),
              let q2 = v[(q1 + 1)...].firstIndex(of: 0x27) else { return nil }
        let charset = asciiLowercased(v[..<q1])
        var bytes: [UInt8] = []
        bytes.reserveCapacity(v.count - q2)
        var i = q2 + 1
        while i < v.count {
            if v[i] == 0x25 {  // '%'
                guard i + 2 < v.count, let hi = hexValue(v[i + 1]), let lo = hexValue(v[i + 2])
                else { return nil }
                bytes.append(hi << 4 | lo)
                i += 3
            } else {
                bytes.append(v[i])
                i += 1
            }
        }
        switch charset {
        case "utf-8", "utf8":
            return String(validating: bytes, as: UTF8.self)
        case "iso-8859-1", "latin1":
            var s = ""
            s.unicodeScalars.append(contentsOf: bytes.map { Unicode.Scalar($0) })
            return s
        default:
            return nil
        }
    }

    @inline(__always) static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    /// RFC 2046: 1-70 bchars, not ending in a space.
    /// bchars := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." / "/" / ":" / "=" / "?" / " "
    static func isValidBoundary(_ b: [UInt8]) -> Bool {
        guard (1...70).contains(b.count), b.last != space else { return false }
        return b.allSatisfy { c in
            switch c {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
            case 0x27, 0x28, 0x29, 0x2B, 0x5F, 0x2C, 0x2D, 0x2E, 0x2F, 0x3A, 0x3D, 0x3F, 0x20: return true
            default: return false
            }
        }
    }
}
