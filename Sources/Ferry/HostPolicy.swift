import HTTPServer

/// Which `Host` names Ferry answers for: the defence against DNS rebinding, where a web page on
/// `evil.example` makes its own name resolve to 127.0.0.1 and so reaches a server bound to loopback as
/// if it were its own origin (CORS and the cross-site write check see one origin and let it through).
///
/// IP literals can never be rebound, so they always pass. Names pass if the operator listed them
/// (`--allowed-hosts`), or `*` was given, or, by default, if Ferry listens on a loopback address and the
/// name is `localhost`; a default Ferry listening on another address answers for any name.
public struct HostPolicy: Sendable {
    /// Allowed names, lower case, without port; `*` for any.
    let names: [String]
    /// Whether names other than `names` (and `localhost`) are refused.
    let restricts: Bool

    public init(allowed: [String]?, listeningOn host: String) {
        if let allowed {
            names = allowed.map { $0.lowercased() }
            restricts = !names.contains("*")
        } else {
            names = []
            restricts = HostPolicy.isLoopback(host)
        }
    }

    /// 421 for a request whose `Host` is a name this server does not answer for.
    func refuses(_ request: Request) -> HTTPError? {
        guard restricts, let header = request.headers["Host"] else { return nil }
        let name = HostPolicy.hostname(of: header)
        if name.isEmpty || HostPolicy.isIPLiteral(name) || name == "localhost" || name.hasSuffix(".localhost")
            || names.contains(name)
        {
            return nil
        }
        return HTTPError(
            421, code: "host_not_allowed",
            "This server does not answer for the host name '\(name.prefix(100))'. Use its address (such as "
                + "127.0.0.1) or localhost; if you reach Ferry through this name (a reverse proxy that passes the "
                + "Host header), start it with --allowed-hosts \(name.prefix(100)).")
    }

    /// The name in a `Host` header, lower case, without port or IPv6 brackets.
    static func hostname(of header: String) -> String {
        var text = Substring(header.lowercased())
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return String(text) }
            return String(text[text.index(after: text.startIndex)..<close])
        }
        if let colon = text.lastIndex(of: ":") { text = text[..<colon] }
        if text.hasSuffix(".") { text = text.dropLast() }
        return String(text)
    }

    static func isIPLiteral(_ name: String) -> Bool {
        if name.contains(":") { return name.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." } }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCIIDigit) && Int(part)! <= 255
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "::1" || host == "localhost" || (isIPLiteral(host) && host.hasPrefix("127."))
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
