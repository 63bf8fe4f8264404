import HTTPServer

extension FilesAPI {
    /// `PUT /api/files/{path}`: the raw body, streamed to a temporary file, then published.
    func put(_ request: Request, target: RelativePath) throws(HTTPError) -> Reply {
        let policy = try CollisionPolicy.from(query: request.query)
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
    /// The URL path of a stored file, percent-encoded segment by segment.
    static func url(of path: RelativePath) -> String {
        filesPrefix + "/" + path.components.map(PercentDecoding.encode).joined(separator: "/")
    }
}
