/// The head of an HTTP request, as it arrived. The body, if any, is streamed separately through a
/// `BodyConsumer`; it is never part of this value.
public struct Request: Sendable {
    /// A short ID unique to this server process, echoed as `X-Request-ID` and in every log line.
    public let id: String
    /// The method as sent, e.g. `GET`.
    public let method: String
    /// The path exactly as sent, still percent-encoded, without the query.
    public let path: String
    /// Query arguments, percent-decoded. A key given several times keeps its first value.
    public let query: [String: String]
    public let headers: HTTPHeaders
    /// The peer's address, e.g. `127.0.0.1` or `::1`.
    public let clientAddress: String
    /// Cuts this request's connection from another thread.
    public let connection: ConnectionControl

    public init(
        id: String, method: String, path: String, query: [String: String], headers: HTTPHeaders,
        clientAddress: String, connection: ConnectionControl = .detached()
    ) {
        self.connection = connection
        self.id = id
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.clientAddress = clientAddress
    }

    /// The declared body length, or nil when absent, malformed or the body is chunked.
    public var contentLength: UInt64? {
        guard let value = headers["Content-Length"] else { return nil }
        return UInt64(value.trimmingASCIIWhitespace())
    }

    /// Whether a body follows the head (a non-zero length, or chunked transfer coding).
    public var hasBody: Bool {
        if let chunked = headers["Transfer-Encoding"], chunked.lowercased().contains("chunked") { return true }
        return (contentLength ?? 0) > 0
    }

    /// Whether the head carries more than one Content-Length (a request-smuggling risk behind a proxy).
    public var hasConflictingLengths: Bool {
        headers.values("Content-Length").count > 1
    }

    /// Whether the client waits for `100 Continue` before sending its body.
    public var expectsContinue: Bool {
        headers["Expect"]?.lowercased() == "100-continue"
    }

    /// True when a query flag is set to `1`, `true` or `yes`.
    public func flag(_ name: String) -> Bool {
        guard let value = query[name]?.lowercased() else { return false }
        return value == "1" || value == "true" || value == "yes" || value.isEmpty
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    public func trimmingASCIIWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
