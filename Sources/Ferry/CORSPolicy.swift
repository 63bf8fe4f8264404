import HTTPServer

/// Cross-origin access for browser clients on other origins (e.g. an Uppy page elsewhere): which origins
/// may call the API, and the headers they may send and read. Applied to every response, errors included,
/// so a browser shows the real error instead of a CORS failure.
public struct CORSPolicy: Sendable {
    /// Allowed origins (`https://example.com`); `*` allows any. Empty: no CORS headers at all.
    public let origins: [String]

    public init(origins: [String]) {
        self.origins = origins
    }

    static let allowedMethods = "POST, HEAD, PATCH, OPTIONS, GET, PUT, DELETE"
    static let allowedHeaders = [
        "Authorization", "Origin", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override", "Content-Type",
        "Upload-Length", "Upload-Offset", "Tus-Resumable", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat",
        "Upload-Checksum", "Range", "If-Range", "If-None-Match", "If-Modified-Since",
    ].joined(separator: ", ")
    static let exposedHeaders = [
        "Location", "Upload-Offset", "Upload-Length", "Tus-Version", "Tus-Resumable", "Tus-Max-Size", "Tus-Extension",
        "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Expires", "Ferry-File", "Ferry-Assembly",
        "Ferry-Max-Request-Body", "Content-Range", "Content-Disposition", "ETag", "X-Request-ID", "Retry-After",
    ].joined(separator: ", ")

    func allows(_ origin: String) -> Bool {
        origins.contains("*") || origins.contains(origin)
    }

    /// A request that changes something, sent by a browser page of another origin that is not allowed:
    /// what a cross-site form or script (CSRF) sends. Browsers always add `Origin` to such requests;
    /// curl and other non-browser clients send none and pass.
    func refusesCrossSiteWrite(_ request: Request) -> HTTPError? {
        guard ["POST", "PUT", "PATCH", "DELETE"].contains(request.method), let origin = request.headers["Origin"] else {
            return nil
        }
        if allows(origin) { return nil }
        let host = request.headers["Host"]?.lowercased() ?? ""
        let authority = origin.lowercased().split(separator: "/", omittingEmptySubsequences: true).dropFirst().first
        if let authority, String(authority) == host { return nil }
        return HTTPError(
            403, code: "cross_origin_refused",
            "A page from \(origin.prefix(100)) may not change files here. Open Ferry's own page, or ask the operator to "
                + "allow that origin with --cors-origins.")
    }

    /// A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin, answered here.
    func preflight(_ request: Request) -> Response? {
        guard request.method == "OPTIONS", request.headers["Access-Control-Request-Method"] != nil,
            let origin = request.headers["Origin"], allows(origin)
        else { return nil }
        var response = Response(status: 204)
        response.headers.add("Access-Control-Allow-Methods", CORSPolicy.allowedMethods)
        response.headers.add("Access-Control-Allow-Headers", CORSPolicy.allowedHeaders)
        response.headers.add("Access-Control-Max-Age", "86400")
        return response
    }

    /// The headers to add to the response to `request`.
    func headers(for request: Request) -> [(String, String)] {
        guard let origin = request.headers["Origin"], allows(origin) else {
            return origins.isEmpty ? [] : [("Vary", "Origin")]
        }
        return [
            ("Access-Control-Allow-Origin", origins.contains("*") ? "*" : origin),
            ("Access-Control-Expose-Headers", CORSPolicy.exposedHeaders), ("Vary", "Origin"),
        ]
    }
}
