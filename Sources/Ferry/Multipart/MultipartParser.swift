// Streaming multipart/form-data parser (RFC 7578, framing per RFC 2046).
// Pure Swift standard library; no Foundation.
//
// The delimiter is CRLF "--" boundary. The body is treated as if it began with
// a virtual CRLF, so a first delimiter at the very start of the body is found
// by the same code as every other. Because a valid boundary never contains CR,
// a delimiter can only begin at a CR, and a held-back delimiter prefix contains
// exactly one CR (its first byte). That keeps the cross-block logic simple:
// the parser holds back at most delimiter length - 1 = boundary length + 3 bytes.

/// Events the parser emits, in order: partBegin, zero or more partData, partEnd, per part.
public enum MultipartEvent {
    case partBegin(MultipartPartHeaders)
    /// A slice of the caller's input or of the parser's small internal carry
    /// buffer; valid only during the callback. Never empty.
    case partData(UnsafeRawBufferPointer)
    case partEnd
}

public struct MultipartParser {
    /// Cap on the total size of one part's header block, CRLFs included.
    static let maxHeaderBytes = 16 * 1024

    private enum State {
        case preamble          // looking for the first delimiter, discarding bytes
        case afterBoundary     // just matched CRLF--boundary
        case closeDash         // matched CRLF--boundary-
        case padding           // transport padding (SP/HT) after the boundary
        case paddingCR         // CR of the CRLF ending the delimiter line
        case headers           // reading part header lines
        case body              // part data, looking for the next delimiter
        case epilogue          // after the close delimiter: everything is ignored
    }

    private static let cr: UInt8 = 0x0D, lf: UInt8 = 0x0A, dash: UInt8 = 0x2D

    private let delimiter: [UInt8]      // CRLF "--" boundary
    private var state: State = .preamble
    /// Held-back proper prefix of `delimiter` (starts with CR) from the end of the last block.
    private var carry: [UInt8]
    private var headerLine: [UInt8] = []
    private var headerBytes = 0
    private var headerSawCR = false
    private var fields: [(name: String, value: String)] = []
    private var failure: MultipartError?

    /// Bytes held back between calls (for tests of the memory bound).
    var heldBackCount: Int { carry.count }

    /// Extracts the boundary parameter from a Content-Type header value like
    /// `multipart/form-data; boundary=----abc` or `multipart/form-data; boundary="a b"`.
    /// nil if not multipart/form-data or no valid boundary (1-70 chars per RFC 2046).
    public static func boundary(fromContentType contentType: String) -> String? {
        let bytes = Array(contentType.utf8)
        let typeEnd = bytes.firstIndex(of: HeaderGrammar.semicolon) ?? bytes.count
        guard HeaderGrammar.asciiLowercased(HeaderGrammar.trimmed(bytes[..<typeEnd]))
                == "multipart/form-data" else { return nil }
        guard let param = HeaderGrammar.parameters(bytes).first(where: { $0.name == "boundary" }),
              HeaderGrammar.isValidBoundary(param.value) else { return nil }
        return String(decoding: param.value, as: UTF8.self)
    }

    /// An invalid boundary (see `boundary(fromContentType:)`) makes `feed` throw.
    public init(boundary: String) {
        let b = Array(boundary.utf8)
        delimiter = [Self.cr, Self.lf, Self.dash, Self.dash] + b
        carry = [Self.cr, Self.lf]   // the virtual CRLF before the body
        carry.reserveCapacity(delimiter.count)
        if !HeaderGrammar.isValidBoundary(b) {
            failure = MultipartError("invalid boundary \"\(boundary)\" (RFC 2046 allows 1-70 characters)")
        }
    }

    /// Feeds the next block of the body, calling `handler` for every event found.
    /// Blocks may be of any size. Throws `MultipartError` for malformed input, or
    /// rethrows what `handler` throws; after any error the parser is unusable.
    public mutating func feed(_ block: UnsafeRawBufferPointer,
                              _ handler: (MultipartEvent) throws -> Void) throws {
        if let failure { throw failure }
        guard let base = block.baseAddress, block.count > 0 else { return }
        do {
            try run(base, block.count, handler)
        } catch {
            failure = error as? MultipartError
                ?? MultipartError("parsing stopped after the event handler threw: \(error)")
            throw error
        }
    }

    /// Call once after the last block: throws if the close delimiter was not seen.
    public func finish() throws {
        if let failure { throw failure }
        guard case .epilogue = state else {
            throw MultipartError("the body ended before the closing boundary: the upload was cut short")
        }
    }

    // MARK: - State machine

    private mutating func run(_ base: UnsafeRawPointer, _ n: Int,
                              _ handler: (MultipartEvent) throws -> Void) throws {
        var p = 0
        while p < n {
            switch state {
            case .preamble:
                p = try scanData(base, p, n, emit: false, handler)
            case .body:
                p = try scanData(base, p, n, emit: true, handler)
            case .headers:
                p = try scanHeaders(base, p, n, handler)
            case .epilogue:
                return
            case .afterBoundary, .closeDash, .padding, .paddingCR:
                try delimiterLineByte(base.load(fromByteOffset: p, as: UInt8.self))
                p += 1
            }
        }
    }

    /// The few bytes after CRLF--boundary: "--" (close) or padding then CRLF.
    private mutating func delimiterLineByte(_ b: UInt8) throws {
        switch (state, b) {
        case (.afterBoundary, Self.dash): state = .closeDash
        case (.closeDash, Self.dash): state = .epilogue
        case (.afterBoundary, HeaderGrammar.space), (.afterBoundary, HeaderGrammar.tab),
             (.padding, HeaderGrammar.space), (.padding, HeaderGrammar.tab): state = .padding
        case (.afterBoundary, Self.cr), (.padding, Self.cr): state = .paddingCR
        case (.paddingCR, Self.lf):
            state = .headers
            headerBytes = 0
            headerSawCR = false
            headerLine.removeAll(keepingCapacity: true)
            fields.removeAll()
        default:
            throw MultipartError("malformed boundary line (unexpected byte 0x\(String(b, radix: 16)) after the boundary)")
        }
    }

    /// Scans part data (or preamble) for the delimiter. Returns the new offset.
    @inline(__always)
    private mutating func scanData(_ base: UnsafeRawPointer, _ from: Int, _ n: Int, emit: Bool,
                                   _ handler: (MultipartEvent) throws -> Void) throws -> Int {
        let dlen = delimiter.count
        var p = from
        if !carry.isEmpty {
            // Continue matching the held-back delimiter prefix.
            let k = carry.count
            let avail = min(dlen - k, n - p)
            var j = 0
            while j < avail, base.load(fromByteOffset: p + j, as: UInt8.self) == delimiter[k + j] { j += 1 }
            if j == avail {
                if k + avail == dlen {
                    carry.removeAll(keepingCapacity: true)
                    try delimiterFound(emit, handler)
                    return p + avail
                }
                carry.append(contentsOf: UnsafeRawBufferPointer(start: base + p, count: avail))
                return n
            }
            // Not a delimiter: the held-back bytes were data. They hold no other CR,
            // so no delimiter can start inside them; resume scanning the block at p.
            if emit { try carry.withUnsafeBytes { try handler(.partData($0)) } }
            carry.removeAll(keepingCapacity: true)
        }
        let start = p
        while true {
            p = Self.findCR(base, p, n)
            if p == n {
                if emit, n > start { try handler(.partData(UnsafeRawBufferPointer(start: base + start, count: n - start))) }
                return n
            }
            let avail = min(dlen, n - p)
            var j = 1
            while j < avail, base.load(fromByteOffset: p + j, as: UInt8.self) == delimiter[j] { j += 1 }
            if j == avail {
                if emit, p > start { try handler(.partData(UnsafeRawBufferPointer(start: base + start, count: p - start))) }
                if avail == dlen {
                    try delimiterFound(emit, handler)
                    return p + dlen
                }
                // A delimiter prefix ends the block: hold it back.
                carry.append(contentsOf: UnsafeRawBufferPointer(start: base + p, count: avail))
                return n
            }
            p += 1
        }
    }

    private mutating func delimiterFound(_ inBody: Bool, _ handler: (MultipartEvent) throws -> Void) throws {
        state = .afterBoundary
        if inBody { try handler(.partEnd) }
    }

    /// Accumulates header lines until the empty line. Returns the new offset.
    private mutating func scanHeaders(_ base: UnsafeRawPointer, _ from: Int, _ n: Int,
                                      _ handler: (MultipartEvent) throws -> Void) throws -> Int {
        var p = from
        while p < n {
            let b = base.load(fromByteOffset: p, as: UInt8.self)
            p += 1
            headerBytes += 1
            if headerBytes > Self.maxHeaderBytes {
                throw MultipartError("part headers exceed \(Self.maxHeaderBytes) bytes")
            }
            if headerSawCR {
                guard b == Self.lf else { throw MultipartError("malformed part header (CR without LF)") }
                headerSawCR = false
                if headerLine.isEmpty {
                    state = .body
                    let headers = MultipartPartHeaders(parsing: fields)
                    fields.removeAll()
                    try handler(.partBegin(headers))
                    return p
                }
                try addHeaderLine()
                headerLine.removeAll(keepingCapacity: true)
            } else if b == Self.cr {
                headerSawCR = true
            } else if b == Self.lf {
                throw MultipartError("malformed part header (LF without CR)")
            } else {
                headerLine.append(b)
            }
        }
        return p
    }

    private mutating func addHeaderLine() throws {
        let line = headerLine[...]
        if let first = line.first, HeaderGrammar.isWhitespace(first) {
            // Obsolete line folding: continuation of the previous field's value.
            guard !fields.isEmpty else { throw MultipartError("malformed part header (leading whitespace)") }
            let more = HeaderGrammar.trimmed(line)
            if !more.isEmpty { fields[fields.count - 1].value += " " + String(decoding: more, as: UTF8.self) }
            return
        }
        guard let colon = line.firstIndex(of: 0x3A) else {
            throw MultipartError("malformed part header line (no ':'): \"\(String(decoding: line.prefix(80), as: UTF8.self))\"")
        }
        let name = line[..<colon]
        guard !name.isEmpty, !name.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            throw MultipartError("malformed part header name: \"\(String(decoding: name.prefix(80), as: UTF8.self))\"")
        }
        fields.append((String(decoding: name, as: UTF8.self),
                       String(decoding: HeaderGrammar.trimmed(line[(colon + 1)...]), as: UTF8.self)))
    }

    // MARK: - Fast CR search

    /// Offset of the first CR in base[from..<to], or `to`. Word-at-a-time (SWAR):
    /// a zero byte in x = word ^ 0x0D0D...; the lowest flagged byte is exact.
    @inline(__always)
    static func findCR(_ base: UnsafeRawPointer, _ from: Int, _ to: Int) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let pattern: UInt64 = 0x0D0D_0D0D_0D0D_0D0D
        @inline(__always) func zeroFlags(_ offset: Int) -> UInt64 {
            let x = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) ^ pattern
            return (x &- ones) & ~x & highs
        }
        var i = from
        while i &+ 32 <= to {
            let a = zeroFlags(i), b = zeroFlags(i &+ 8), c = zeroFlags(i &+ 16), d = zeroFlags(i &+ 24)
            if (a | b | c | d) != 0 {
                if a != 0 { return i &+ a.trailingZeroBitCount >> 3 }
                if b != 0 { return i &+ 8 &+ b.trailingZeroBitCount >> 3 }
                if c != 0 { return i &+ 16 &+ c.trailingZeroBitCount >> 3 }
                return i &+ 24 &+ d.trailingZeroBitCount >> 3
            }
            i &+= 32
        }
        while i &+ 8 <= to {
            let a = zeroFlags(i)
            if a != 0 { return i &+ a.trailingZeroBitCount >> 3 }
            i &+= 8
        }
        while i < to {
            if base.load(fromByteOffset: i, as: UInt8.self) == 0x0D { return i }
            i &+= 1
        }
        return to
    }
}
