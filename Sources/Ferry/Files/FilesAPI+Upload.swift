import HTTPServer

extension FilesAPI {
    /// `PUT /api/files/{path}`: the raw body, streamed to a temporary file, then published.
    func put(_ request: Request, target: RelativePath) throws(HTTPError) -> Reply {
        var policy = try CollisionPolicy.from(query: request.query)
        // A PUT that names the version it replaces (If-Match) is a conditional update: it overwrites.
        if try checkWritePreconditions(request, target: target), policy == .refuse { policy = .overwrite }
        try storage.checkUploadTarget(target, policy: policy)
        let writer = try FileWriter(storage: storage, declaredLength: request.contentLength)
        let upload = PutUpload(writer: writer, target: target, policy: policy)
        if !request.hasBody {
            return .work { upload.finish() }
        }
        return .consume(upload)
    }
}

/// A `PUT` body on its way to disk.
final class PutUpload: BodyConsumer, @unchecked Sendable {
    // Sendable: consume/abort run on the event thread and finish on a worker, one after the other.
    private let writer: FileWriter
    private let target: RelativePath
    private let policy: CollisionPolicy

    init(writer: FileWriter, target: RelativePath, policy: CollisionPolicy) {
        self.writer = writer
        self.target = target
        self.policy = policy
    }

    func consume(_ block: UnsafeRawBufferPointer) throws {
        try writer.write(block)
    }

    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool {
        writer.pauses(until: resume)
    }

    func finish() -> Response {
        do {
            let stored = try writer.commit(at: target, policy: policy)
            var response = Response(status: 201, json: stored.json)
            response.headers.add("Location", FilesAPI.url(of: stored.path))
            return response
        } catch {
            return Response(error: error)
        }
    }

    func abort(reason: AbortReason) {
        writer.discard()
    }
}

extension FilesAPI {
    /// `If-Match`, `If-None-Match` and `If-Unmodified-Since` on a PUT or DELETE (RFC 9110 §13): 412 when
    /// they fail, so two clients cannot overwrite each other's changes unknowingly. Returns true when an
    /// `If-Match` matched the current file. Checked when the request arrives (not again at the rename).
    func checkWritePreconditions(_ request: Request, target: RelativePath) throws(HTTPError) -> Bool {
        let ifMatch = request.headers["If-Match"]
        let ifNoneMatch = request.headers["If-None-Match"]
        let ifUnmodifiedSince = request.headers["If-Unmodified-Since"]
        guard ifMatch != nil || ifNoneMatch != nil || ifUnmodifiedSince != nil else { return false }
        let failed = HTTPError(
            412, code: "precondition_failed",
            "'\(target)' is not in the state this request expects (If-Match / If-None-Match / If-Unmodified-Since); "
                + "fetch it again and retry.")
        guard let current = try storage.status(of: target), current.isRegularFile else {
            // Nothing there: If-Match cannot match; If-None-Match: * is satisfied.
            if ifMatch != nil { throw failed }
            return false
        }
        let outcome = ConditionalRequest.evaluate(
            method: request.method, ifMatch: ifMatch, ifNoneMatch: ifNoneMatch, ifModifiedSince: nil,
            ifUnmodifiedSince: ifUnmodifiedSince, etag: current.entityTag, lastModified: current.modifiedSeconds)
        guard outcome == .proceed else { throw failed }
        return ifMatch != nil
    }

    /// The URL path of a stored file, percent-encoded segment by segment.
    static func url(of path: RelativePath) -> String {
        filesPrefix + "/" + path.components.map(PercentDecoding.encode).joined(separator: "/")
    }
}
