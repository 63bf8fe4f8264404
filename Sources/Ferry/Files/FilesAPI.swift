import HTTPServer

/// The HTTP API: routes requests to the files, folders and move handlers.
///
/// Runs on event-loop threads: everything here is a quick check (stat, open); blocking work goes to
/// `.work` or to a `BodyConsumer`'s `finish`.
public struct FilesAPI: Responder {
    let storage: Storage
    static let filesPrefix = "/api/files"
    static let foldersPrefix = "/api/folders/"

    public init(storage: Storage) {
        self.storage = storage
    }

    public func reply(to request: Request) -> Reply {
        do {
            return try route(request)
        } catch {
            return .respond(Response(error: error))
        }
    }

    private func route(_ request: Request) throws(HTTPError) -> Reply {
        let path = request.path
        if path == FilesAPI.filesPrefix || path.hasPrefix(FilesAPI.filesPrefix + "/") {
            let encoded = path.dropFirst(FilesAPI.filesPrefix.count).drop { $0 == "/" }
            // A leading "//" would make an absolute-looking path: refuse rather than silently strip.
            if path.hasPrefix(FilesAPI.filesPrefix + "//") {
                throw HTTPError.badRequest("bad_path", "Paths are relative to your root; remove the extra '/'.")
            }
            let target = try RelativePath(encoded: encoded)
            let isFolderURL = path.hasSuffix("/") || target.isRoot
            switch request.method {
            case "GET", "HEAD": return try download(request, target: target)
            case "PUT":
                guard !isFolderURL else {
                    throw HTTPError.badRequest("missing_name", "PUT needs a file name: /api/files/folder/name.ext.")
                }
                return try put(request, target: target)
            case "POST":
                return try multipartUpload(request, folder: target)
            case "DELETE": return try delete(request, target: target)
            default:
                throw HTTPError.methodNotAllowed(request.method, allowed: ["GET", "HEAD", "PUT", "POST", "DELETE"])
            }
        }
        if path.hasPrefix(FilesAPI.foldersPrefix) {
            guard request.method == "POST" else { throw HTTPError.methodNotAllowed(request.method, allowed: ["POST"]) }
            return try createFolder(request, target: RelativePath(encoded: path.dropFirst(FilesAPI.foldersPrefix.count)))
        }
        if path == "/api/move" {
            guard request.method == "POST" else { throw HTTPError.methodNotAllowed(request.method, allowed: ["POST"]) }
            return try move(request)
        }
        if path == "/" || path == "/api" || path == "/api/" {
            return .respond(
                Response(
                    status: 200,
                    json: .object([
                        ("name", .string("ferry")), ("version", .string(Ferry.version)),
                        ("files", .string("/api/files/")),
                    ])))
        }
        throw HTTPError.notFound("Nothing is at \(path). The files API is at /api/files/.")
    }
}

/// Program-wide facts.
public enum Ferry {
    public static let version = "0.1.0"
}
