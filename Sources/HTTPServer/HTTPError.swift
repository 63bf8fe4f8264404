/// An error a client caused (or a server fault), carrying the HTTP status it maps to and a message
/// that tells the user what to do. Rendered as `{"error": {"code": ..., "message": ...}}`.
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    /// A stable, machine-readable code, e.g. `file_exists`.
    public let code: String
    /// A sentence for people: what went wrong and what to do about it.
    public let message: String
    /// Extra response headers, e.g. `Allow` for a 405.
    public var headers: HTTPHeaders
    /// Extra fields placed beside `code` and `message` in the JSON body.
    public var details: [(String, JSON)]

    public init(
        _ status: Int, code: String, _ message: String, headers: HTTPHeaders = HTTPHeaders(),
        details: [(String, JSON)] = []
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details
    }

    public var description: String { "\(status) \(code): \(message)" }

    public static func badRequest(_ code: String, _ message: String) -> HTTPError {
        HTTPError(400, code: code, message)
    }

    public static func notFound(_ message: String) -> HTTPError {
        HTTPError(404, code: "not_found", message)
    }

    public static func methodNotAllowed(_ method: String, allowed: [String]) -> HTTPError {
        var headers = HTTPHeaders()
        headers.add("Allow", allowed.joined(separator: ", "))
        return HTTPError(
            405, code: "method_not_allowed",
            "\(method) is not allowed here; use one of \(allowed.joined(separator: ", ")).", headers: headers)
    }

    public static func internalError(requestID: String) -> HTTPError {
        HTTPError(
            500, code: "internal_error",
            "The server failed to handle this request (request ID \(requestID)). Retry; if it persists, "
                + "give the request ID to the operator.")
    }
}

extension Response {
    /// The JSON error response for `error`.
    public init(error: HTTPError) {
        var fields: [(String, JSON)] = [("code", .string(error.code)), ("message", .string(error.message))]
        fields.append(contentsOf: error.details)
        self.init(status: error.status, json: .object([("error", .object(fields))]))
        for (name, value) in error.headers { headers.add(name, value) }
    }
}
