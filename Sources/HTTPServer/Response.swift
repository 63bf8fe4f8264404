/// An HTTP response: status, headers and a body that is either small bytes in memory or a streamed source.
public struct Response: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: ResponseBody

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: ResponseBody = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response (`Content-Type: application/json`).
    public init(status: Int, json: JSON) {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json; charset=utf-8")
        self.init(status: status, headers: headers, body: .bytes(Array((json.serialized() + "\n").utf8)))
    }
}

/// A response body. Sizes are 64-bit throughout: bodies past 4 GiB are ordinary.
public enum ResponseBody: Sendable {
    case empty
    case bytes([UInt8])
    /// `length` bytes produced on demand by `source`, read through a fixed buffer.
    case stream(length: UInt64, source: any ByteSource)

    /// The number of bytes the body holds.
    public var length: UInt64 {
        switch self {
        case .empty: return 0
        case .bytes(let bytes): return UInt64(bytes.count)
        case .stream(let length, _): return length
        }
    }
}

/// Produces a response body on demand, e.g. by `pread` from a file.
///
/// Threading: called from the connection's event-loop thread, one call at a time.
public protocol ByteSource: AnyObject, Sendable {
    /// Fills `buffer` with the bytes at `position` (relative to the start of the body); returns how many
    /// it wrote (more than 0 while bytes remain), or -1 on an I/O error, which aborts the response.
    func read(at position: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int
}
