import HTTPServer

extension FilesAPI {
    /// `POST /api/files/{folder}/` with `multipart/form-data` (what `curl -F` and HTML forms send): every
    /// file part is streamed to its own temporary file, then all are published under the collision policy.
    func multipartUpload(_ request: Request, folder: RelativePath) throws(HTTPError) -> Reply {
        guard let contentType = request.headers["Content-Type"],
            let boundary = MultipartParser.boundary(fromContentType: contentType)
        else {
            throw HTTPError(
                415, code: "unsupported_media_type",
                "POST to a folder takes multipart/form-data with a boundary (e.g. curl -F file=@name); "
                    + "to upload a raw body use PUT /api/files/folder/name.")
        }
        let policy = try CollisionPolicy.from(query: request.query)
        if let existing = try storage.status(of: folder), !existing.isDirectory {
            throw HTTPError(409, code: "not_a_folder", "'\(folder)' is a file; upload into a folder.")
        }
        try storage.checkParent(of: folder.isRoot ? folder : (try folder.appending("x")))
        if let declared = request.contentLength { try storage.checkFreeSpace(for: declared) }
        return .consume(MultipartUpload(api: self, folder: folder, policy: policy, boundary: boundary))
    }
}

/// A multipart body on its way to disk: one `FileWriter` per file part.
final class MultipartUpload: BodyConsumer, @unchecked Sendable {
    // Sendable: consume/abort run on the event thread and finish on a worker, one after the other.
    private let api: FilesAPI
    private let folder: RelativePath
    private let policy: CollisionPolicy
    private var parser: MultipartParser
    private var current: (writer: FileWriter, path: RelativePath)?
    private var completed: [(writer: FileWriter, path: RelativePath)] = []
    /// Parts that ended, whose last bytes may still be on their way to disk.
    private var landing: [FileWriter] = []
    static let maximumFiles = 1000

    init(api: FilesAPI, folder: RelativePath, policy: CollisionPolicy, boundary: String) {
        self.api = api
        self.folder = folder
        self.policy = policy
        parser = MultipartParser(boundary: boundary)
    }

    func consume(_ block: UnsafeRawBufferPointer) throws {
        do {
            try feed(block)
        } catch let error as MultipartError {
            throw HTTPError.badRequest(
                "bad_multipart", "The multipart body is malformed (\(error.message)); send it again as multipart/form-data.")
        }
    }

    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool {
        if let current, current.writer.pauses(until: resume) { return true }
        while let part = landing.first {
            if part.pauses(until: resume) { return true }
            landing.removeFirst()
        }
        return false
    }

    private func feed(_ block: UnsafeRawBufferPointer) throws {
        try parser.feed(block) { event in
            switch event {
            case .partBegin(let headers):
                try begin(headers)
            case .partData(let data):
                try current?.writer.write(data)
            case .partEnd:
                if let current {
                    current.writer.seal()
                    completed.append(current)
                    landing.append(current.writer)
                }
                current = nil
            }
        }
    }

    private func begin(_ headers: MultipartPartHeaders) throws(HTTPError) {
        // Parts without a file name (plain form fields, or a form's empty file input) are skipped.
        guard let filename = headers.filename, !filename.isEmpty else {
            let disposition = headers.fields.first { $0.name.lowercased() == "content-disposition" }?.value ?? ""
            if disposition.lowercased().contains("filename*") {
                throw HTTPError.badRequest(
                    "bad_path", "A part's filename* is not UTF-8 percent-encoded (RFC 8187); send the name as UTF-8.")
            }
            return
        }
        guard completed.count < MultipartUpload.maximumFiles else {
            throw HTTPError(413, code: "too_many_files", "Send at most \(MultipartUpload.maximumFiles) files per request.")
        }
        let relative = try RelativePath(plain: filename)
        guard !relative.isRoot else { throw HTTPError.badRequest("bad_path", "A part's file name is empty.") }
        let path = try RelativePath(components: folder.components + relative.components)
        if completed.contains(where: { $0.path == path }) && policy != .rename {
            throw HTTPError(409, code: "duplicate_name", "'\(path)' appears twice in this upload; rename one of them.")
        }
        // A part may not need another part's file to be a folder, or the other way round.
        if let clash = completed.first(where: { other in
            other.path.components.starts(with: path.components) || path.components.starts(with: other.path.components)
        }), clash.path != path {
            throw HTTPError(
                409, code: "conflicting_names",
                "'\(path)' and '\(clash.path)' cannot both be stored: one would have to be a file and a folder.")
        }
        try api.storage.checkUploadTarget(path, policy: policy)
        current = (try FileWriter(storage: api.storage, declaredLength: nil), path)
    }

    func finish() -> Response {
        do throws(HTTPError) {
            do {
                try parser.finish()
            } catch {
                throw HTTPError.badRequest(
                    "bad_multipart", "The multipart body ended early or is malformed (\(error)); send it again.")
            }
            // Check every part before storing any, so a conflict stores nothing.
            for (_, path) in completed { try api.storage.checkUploadTarget(path, policy: policy) }
            var stored: [JSON] = []
            for (writer, path) in completed {
                stored.append(try writer.commit(at: path, policy: policy).json)
            }
            completed = []
            landing = []
            return Response(status: 201, json: .object([("files", .array(stored))]))
        } catch {
            discardAll()
            return Response(error: error)
        }
    }

    func abort(reason: AbortReason) { discardAll() }

    private func discardAll() {
        current?.writer.discard()
        current = nil
        for part in completed { part.writer.discard() }
        completed = []
        landing = []
    }
}
