import HTTPServer

/// A validated path inside the data root: zero or more non-empty components, none of them `.`, `..`,
/// containing `/` or NUL, or longer than a file name may be. The empty path is the root itself.
///
/// Built from the still percent-encoded URL path, segment by segment, so that an encoded `/` (`%2F`) is
/// seen and refused instead of becoming a separator.
public struct RelativePath: Sendable, Equatable, CustomStringConvertible {
    public let components: [String]

    /// The work area of the server, never reachable through the API.
    static let reservedName = ".ferry"

    public init(components: [String]) throws(HTTPError) {
        for component in components { try RelativePath.validate(component) }
        if components.first == RelativePath.reservedName {
            throw HTTPError.badRequest(
                "reserved_path", "'\(RelativePath.reservedName)' is the server's own folder; choose another name.")
        }
        let total = components.reduce(0) { $0 + $1.utf8.count + 1 }
        guard total <= 4000 else {
            throw HTTPError.badRequest("path_too_long", "The path is longer than 4000 bytes; use a shorter one.")
        }
        self.components = components
    }

    /// Parses a percent-encoded URL path such as `docs/r%C3%A9sum%C3%A9.pdf` (a trailing `/` is allowed).
    public init(encoded: Substring) throws(HTTPError) {
        var text = encoded
        if text.hasSuffix("/") { text = text.dropLast() }
        if text.isEmpty {
            try self.init(components: [])
            return
        }
        var components: [String] = []
        for segment in text.split(separator: "/", omittingEmptySubsequences: false) {
            guard let bytes = PercentDecoding.decodeBytes(segment) else {
                throw HTTPError.badRequest(
                    "bad_path", "The path has a malformed percent-escape; encode '%' as '%25'.")
            }
            guard let decoded = String(validating: bytes, as: UTF8.self) else {
                throw HTTPError.badRequest("bad_path", "The path is not valid UTF-8; send file names as UTF-8.")
            }
            components.append(decoded)
        }
        try self.init(components: components)
    }

    /// Parses a plain (not percent-encoded) path such as `docs/report.pdf`, e.g. from a JSON body or a
    /// multipart file name. Leading and trailing slashes are not allowed: paths are relative to the root.
    public init(plain: String) throws(HTTPError) {
        var text = Substring(plain)
        if text.hasSuffix("/") { text = text.dropLast() }
        if text.isEmpty {
            try self.init(components: [])
            return
        }
        try self.init(components: text.split(separator: "/", omittingEmptySubsequences: false).map(String.init))
    }

    private static func validate(_ component: String) throws(HTTPError) {
        if component.isEmpty {
            throw HTTPError.badRequest(
                "bad_path", "The path has an empty segment ('//' or a leading '/'); paths are relative to your root.")
        }
        if component == "." || component == ".." {
            throw HTTPError.badRequest(
                "bad_path", "The path may not contain '.' or '..' segments; name the file from your root.")
        }
        if component.utf8.contains(0) {
            throw HTTPError.badRequest("bad_path", "The path contains a NUL byte, which no file name may hold.")
        }
        if component.utf8.contains(UInt8(ascii: "/")) {
            throw HTTPError.badRequest(
                "bad_path", "A path segment contains an encoded '/' (%2F); a file name cannot hold '/'.")
        }
        if component.utf8.count > 255 {
            throw HTTPError.badRequest("name_too_long", "A file or folder name is longer than 255 bytes; shorten it.")
        }
    }

    public var isRoot: Bool { components.isEmpty }
    public var name: String { components.last ?? "" }
    public var parent: RelativePath { RelativePath(trusted: Array(components.dropLast())) }
    public var description: String { components.joined(separator: "/") }

    public func appending(_ component: String) throws(HTTPError) -> RelativePath {
        try RelativePath(components: components + [component])
    }

    /// The same path with the last component replaced.
    func renamed(_ name: String) -> RelativePath {
        RelativePath(trusted: Array(components.dropLast()) + [name])
    }

    private init(trusted components: [String]) { self.components = components }
}
