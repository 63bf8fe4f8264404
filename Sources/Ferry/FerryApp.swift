import Dispatch
import HTTPServer

/// The whole HTTP API: tus uploads at `/api/uploads/`, limits at `/api/config`, files everywhere else.
public struct FerryApp: Responder {
    let files: FilesAPI
    let uploads: TusAPI
    let cors: CORSPolicy
    let hosts: HostPolicy

    /// Opens the upload store (recovering uploads a crash interrupted) and starts its expiry reaper.
    /// `startupLogger` takes what recovery logs; `logger` everything after.
    public init(storage: Storage, options: ServeOptions, logger: Logger, startupLogger: Logger) throws {
        files = FilesAPI(storage: storage)
        let store = try UploadStore(
            storage: storage, expiry: Int64(options.uploadExpiry), maximumSize: options.maximumUploadSize,
            logger: logger, startupLogger: startupLogger)
        uploads = TusAPI(store: store, maximumRequestBody: options.maximumRequestBody)
        cors = CORSPolicy(origins: options.corsOrigins)
        hosts = HostPolicy(allowed: options.allowedHosts, listeningOn: options.host)
        FerryApp.scheduleReaper(store, every: max(1, min(60, options.uploadExpiry / 10)))
    }

    private static func scheduleReaper(_ store: UploadStore, every seconds: Int) {
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(seconds)) {
            store.reapExpired()
            scheduleReaper(store, every: seconds)
        }
    }

    public func reply(to request: Request) -> Reply {
        if let refused = hosts.refuses(request) {
            return .respond(Response(error: refused))
        }
        let corsHeaders = cors.headers(for: request)
        if let preflight = cors.preflight(request) {
            return Reply.respond(preflight).withHeaders(corsHeaders)
        }
        if let refused = cors.refusesCrossSiteWrite(request) {
            return Reply.respond(Response(error: refused)).withHeaders(corsHeaders)
        }
        return route(request).withHeaders(corsHeaders)
    }

    private func route(_ request: Request) -> Reply {
        let path = request.path
        if path == TusAPI.prefix || path.hasPrefix(TusAPI.prefix + "/") {
            return uploads.reply(to: request)
        }
        if path == "/api/config" {
            guard request.method == "GET" || request.method == "HEAD" else {
                return .respond(Response(error: .methodNotAllowed(request.method, allowed: ["GET", "HEAD"])))
            }
            return .respond(Response(status: 200, json: configuration))
        }
        return files.reply(to: request)
    }

    /// What clients (the web UI, the CLI) need to size their chunks and find the endpoints.
    private var configuration: JSON {
        .object([
            ("version", .string(Ferry.version)),
            ("tus", .object([
                ("endpoint", .string(TusAPI.prefix + "/")),
                ("version", .string(TusProtocol.version)),
                ("extensions", .array(TusProtocol.extensions.map { .string($0) })),
                ("maxSize", uploads.store.maximumSize.map { .uint($0) } ?? .null),
                ("expirySeconds", .int(uploads.store.expiry)),
            ])),
            ("maxRequestBody", uploads.maximumRequestBody.map { .uint($0) } ?? .null),
        ])
    }
}
