import Dispatch
import HTTPServer

/// The tus 1.0.0 server at `/api/uploads/`: resumable uploads that pass any proxy's body cap in chunks.
///
/// Runs on event-loop threads: lookups and header checks here; fsync, database writes and renames go to
/// `.work` or to the PATCH consumer's `finish`.
struct TusAPI {
    static let prefix = "/api/uploads"
    let store: UploadStore
    var storage: Storage { store.storage }
    /// The largest request body the server accepts, advertised so clients size their chunks below it.
    let maximumRequestBody: UInt64?

    func reply(to request: Request) -> Reply {
        var response: Reply
        do {
            response = try route(request)
        } catch {
            response = .respond(Response(error: error))
        }
        return response.withHeaders(commonHeaders)
    }

    private var commonHeaders: [(String, String)] {
        [("Tus-Resumable", TusProtocol.version), ("Cache-Control", "no-store")]
    }

    private func route(_ request: Request) throws(HTTPError) -> Reply {
        let method = request.headers["X-HTTP-Method-Override"]?.uppercased() ?? request.method
        let rest = request.path.dropFirst(TusAPI.prefix.count).drop { $0 == "/" }
        if method == "OPTIONS" { return .respond(options()) }
        if method != "GET", request.headers["Tus-Resumable"] != TusProtocol.version {
            var headers = HTTPHeaders()
            headers.add("Tus-Version", TusProtocol.version)
            throw HTTPError(
                412, code: "unsupported_tus_version",
                "Send 'Tus-Resumable: \(TusProtocol.version)': it is the tus version this server speaks.",
                headers: headers)
        }
        if rest.isEmpty {
            guard method == "POST" else { throw HTTPError.methodNotAllowed(method, allowed: ["POST", "OPTIONS"]) }
            return try create(request, collectionHasSlash: request.path.hasSuffix("/"))
        }
        guard Upload.isValidID(rest), let upload = store.upload(String(rest)) else {
            throw HTTPError.notFound("No upload has the ID '\(rest.prefix(64))'; it may have expired. Start a new upload.")
        }
        switch method {
        case "HEAD", "GET": return head(upload)
        case "PATCH": return try patch(request, upload: upload)
        case "DELETE": return terminate(upload)
        default:
            throw HTTPError.methodNotAllowed(method, allowed: ["HEAD", "PATCH", "DELETE", "OPTIONS"])
        }
    }

    /// `OPTIONS`: what this server supports, and the limits a client needs to size its chunks.
    func options() -> Response {
        var response = Response(status: 204)
        response.headers.add("Tus-Version", TusProtocol.version)
        response.headers.add("Tus-Extension", TusProtocol.extensions.joined(separator: ","))
        response.headers.add(
            "Tus-Checksum-Algorithm", ChecksumDigest.Algorithm.allCases.map(\.rawValue).joined(separator: ","))
        if let maximum = store.maximumSize { response.headers.add("Tus-Max-Size", String(maximum)) }
        if let maximumRequestBody { response.headers.add("Ferry-Max-Request-Body", String(maximumRequestBody)) }
        return response
    }

    // MARK: HEAD

    /// `HEAD`: the durable offset. While another request is writing to the upload, HEAD waits (a few
    /// seconds at most) for it to end; a request that has gone silent (a client that resumes before the
    /// server noticed its old connection die) is cut, keeping its bytes, so the answer is the offset the
    /// next PATCH must use. A request still delivering bytes is never cut by a HEAD: 423 if it goes on.
    private func head(_ upload: Upload) -> Reply {
        guard upload.snapshot.writer != nil else { return .respond(headResponse(upload)) }
        // Answer once the writer is done (a stalled one is cut, keeping its bytes), holding no thread.
        return .later { respond in
            upload.whenWriterGone(within: 6) { gone in
                respond(gone ? self.headResponse(upload) : Response(error: TusAPI.locked))
            }
        }
    }

    private func headResponse(_ upload: Upload) -> Response {
        let progress = upload.snapshot
        var response = Response(status: 200)
        switch upload.kind {
        case .single:
            response.headers.add("Upload-Offset", String(progress.offset))
        case .partial:
            response.headers.add("Upload-Concat", "partial")
            response.headers.add("Upload-Offset", String(progress.offset))
        case .final(_, let header):
            // A final upload has an offset only once it is assembled.
            response.headers.add("Upload-Concat", header)
            switch progress.phase {
            case .receiving: response.headers.add("Ferry-Assembly", "waiting-for-parts")
            case .assembling: response.headers.add("Ferry-Assembly", "assembling")
            case .failed(let reason): response.headers.add("Ferry-Assembly", "failed: " + reason.asciiHeaderValue)
            case .complete:
                response.headers.add("Ferry-Assembly", "done")
                response.headers.add("Upload-Offset", String(progress.offset))
            }
        }
        if let length = progress.length {
            response.headers.add("Upload-Length", String(length))
        } else {
            response.headers.add("Upload-Defer-Length", "1")
        }
        if !upload.metadataHeader.isEmpty { response.headers.add("Upload-Metadata", upload.metadataHeader) }
        if case .complete(let path) = progress.phase {
            response.headers.add("Ferry-File", FilesAPI.url(of: path))
        } else {
            response.headers.add("Upload-Expires", store.expires(upload))
        }
        return response
    }

    static let locked: HTTPError = {
        var headers = HTTPHeaders()
        headers.add("Retry-After", "1")
        return HTTPError(
            423, code: "upload_locked",
            "Another request is still writing to this upload. Retry in a second; a request that has stalled "
                + "is stopped after 3 seconds of silence, keeping its bytes.",
            headers: headers)
    }()

    // MARK: DELETE

    /// `DELETE` (termination): cuts a request still writing, then forgets the upload and its bytes.
    private func terminate(_ upload: Upload) -> Reply {
        if upload.kind.isPartial, let final = store.finals(containing: upload.id).first {
            return .respond(
                Response(
                    error: HTTPError(
                        409, code: "partial_in_use",
                        "This partial upload is part of the final upload \(final.id); delete that one first.")))
        }
        upload.snapshot.writer?.connection.cut()
        let store = self.store
        return .later { respond in
            upload.whenWriterGone(within: 5) { _ in
                DispatchQueue.global().async {
                    store.remove(upload)
                    respond(Response(status: 204))
                }
            }
        }
    }
}

extension String {
    /// Printable ASCII only, for a header value made from a message.
    var asciiHeaderValue: String {
        String(String.UnicodeScalarView(unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? $0 : "?" }))
    }
}
