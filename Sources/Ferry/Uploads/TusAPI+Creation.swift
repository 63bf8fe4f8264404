import HTTPServer

extension TusAPI {
    /// `POST` (creation, creation-with-upload, creation-defer-length).
    ///
    /// `Upload-Metadata` keys Ferry reads: `filename` (or `name`), `folder`, `sha256` (hex SHA-256 of the
    /// whole file) and `onconflict` (`refuse`, `overwrite`, `rename`; `?overwrite=1` / `?rename=1` work too).
    /// All are optional; an upload without a name is stored as `upload-<id>`.
    func create(_ request: Request, collectionHasSlash: Bool) throws(HTTPError) -> Reply {
        if request.headers["Upload-Concat"] != nil {
            throw HTTPError.badRequest(
                "concatenation_unsupported", "This server does not offer the concatenation extension yet; upload in one series of PATCHes.")
        }
        let length = try TusProtocol.parseSize(request.headers["Upload-Length"], header: "Upload-Length")
        if let deferred = request.headers["Upload-Defer-Length"] {
            guard deferred == "1" else {
                throw HTTPError.badRequest("bad_upload_defer_length", "Upload-Defer-Length may only be 1.")
            }
            guard length == nil else {
                throw HTTPError.badRequest("bad_upload_length", "Send Upload-Length or Upload-Defer-Length: 1, not both.")
            }
        } else if length == nil {
            throw HTTPError.badRequest(
                "missing_upload_length", "Send Upload-Length with the file's size (or Upload-Defer-Length: 1).")
        }
        if let length { try checkSize(length) }
        let metadata = try TusProtocol.parseMetadata(request.headers["Upload-Metadata"])
        func value(_ key: String) -> String? { metadata.first { $0.key == key }?.text }
        let id = Hex.random(bytes: 16)
        let folder = try RelativePath(plain: value("folder") ?? "")
        let name = try RelativePath(plain: value("filename") ?? value("name") ?? "upload-\(id)")
        guard !name.isRoot else { throw HTTPError.badRequest("bad_path", "The filename in Upload-Metadata is empty.") }
        let target = try RelativePath(components: folder.components + name.components)
        var expectedSHA256: String?
        if let given = value("sha256") {
            let hex = given.lowercased()
            guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            else {
                throw HTTPError.badRequest("bad_sha256", "The sha256 in Upload-Metadata must be 64 hexadecimal digits.")
            }
            expectedSHA256 = hex
        }
        var policy = try CollisionPolicy.from(query: request.query)
        if let choice = value("onconflict") {
            guard ["refuse", "overwrite", "rename"].contains(choice) else {
                throw HTTPError.badRequest("bad_onconflict", "onconflict must be refuse, overwrite or rename.")
            }
            policy = CollisionPolicy(name: choice)
        }
        try storage.checkUploadTarget(target, policy: policy)

        let withBody = request.hasBody
        if withBody && request.headers["Content-Type"] != TusProtocol.contentType {
            throw HTTPError(
                415, code: "unsupported_media_type",
                "A creation request with data needs Content-Type: \(TusProtocol.contentType).")
        }
        if withBody, let length, let declared = request.contentLength, declared > length {
            throw TusAPI.tooLong(length: length, offset: 0)
        }
        let upload = try store.prepare(
            id: id, length: length, metadataHeader: request.headers["Upload-Metadata"] ?? "", target: target,
            expectedSHA256: expectedSHA256, policy: policy)
        let location = (collectionHasSlash ? "" : "uploads/") + id
        if withBody {
            return .consume(try PatchUpload(store: store, upload: upload, request: request, creation: location))
        }
        let store = self.store
        return .work {
            do throws(HTTPError) {
                try store.persist(upload)
                var response = Response(status: 201)
                response.headers.add("Location", location)
                response.headers.add("Upload-Offset", "0")
                if length == 0 {
                    let path = try store.complete(upload)
                    response.headers.add("Ferry-File", FilesAPI.url(of: path))
                } else {
                    response.headers.add("Upload-Expires", store.expires(upload))
                }
                return response
            } catch {
                return Response(error: error)
            }
        }
    }

    func checkSize(_ length: UInt64) throws(HTTPError) {
        if let maximum = store.maximumSize, length > maximum {
            throw HTTPError(
                413, code: "upload_too_large",
                "This upload is \(length) bytes; the server accepts at most \(maximum) bytes (Tus-Max-Size).",
                details: [("limit", .uint(maximum))])
        }
    }

    static func tooLong(length: UInt64, offset: UInt64) -> HTTPError {
        HTTPError(
            413, code: "past_upload_length",
            "This request would write past the upload's length of \(length) bytes (\(length - offset) remain).")
    }
}
