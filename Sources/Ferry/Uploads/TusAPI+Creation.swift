import HTTPServer

extension TusAPI {
    /// `POST` (creation, creation-with-upload, creation-defer-length).
    ///
    /// `Upload-Metadata` keys Ferry reads: `filename` (or `name`), `folder`, `sha256` (hex SHA-256 of the
    /// whole file) and `onconflict` (`refuse`, `overwrite`, `rename`; `?overwrite=1` / `?rename=1` work too).
    /// All are optional; an upload without a name is stored as `upload-<id>`.
    func create(_ request: Request, collectionHasSlash: Bool) throws(HTTPError) -> Reply {
        var kind = Upload.Kind.single
        if let concat = request.headers["Upload-Concat"] {
            kind = try concatenation(concat)
        }
        if case .final = kind { return try createFinal(request, kind: kind, collectionHasSlash: collectionHasSlash) }
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
        let id = Hex.random(bytes: 16)
        let (target, expectedSHA256, policy) = try placement(request, id: id)
        if !kind.isPartial { try storage.checkUploadTarget(target, policy: policy) }
        return try start(
            request, id: id, kind: kind, length: length, target: target, expectedSHA256: expectedSHA256, policy: policy,
            collectionHasSlash: collectionHasSlash)
    }

    /// Where a new upload goes, from its metadata and query: target path, expected SHA-256, policy.
    private func placement(_ request: Request, id: String) throws(HTTPError) -> (RelativePath, String?, CollisionPolicy) {
        let metadata = try TusProtocol.parseMetadata(request.headers["Upload-Metadata"])
        for pair in metadata where ["filename", "name", "folder", "sha256", "onconflict"].contains(pair.key) {
            if pair.value != nil && pair.text == nil {
                throw HTTPError.badRequest("bad_upload_metadata", "The Upload-Metadata value of '\(pair.key)' is not UTF-8.")
            }
        }
        func value(_ key: String) -> String? { metadata.first { $0.key == key }?.text }
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
        return (target, expectedSHA256, policy)
    }

    /// Makes the upload and answers: at once (`.work`), or after storing the creation request's body.
    private func start(
        _ request: Request, id: String, kind: Upload.Kind, length: UInt64?, target: RelativePath,
        expectedSHA256: String?, policy: CollisionPolicy, collectionHasSlash: Bool
    ) throws(HTTPError) -> Reply {
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
            id: id, kind: kind, length: length, metadataHeader: request.headers["Upload-Metadata"] ?? "",
            target: target, expectedSHA256: expectedSHA256, policy: policy)
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
                if case .final = upload.kind {
                    // Assembled in the background once every part is filled; HEAD shows the state.
                    store.assembleIfReady(upload)
                    return response
                }
                response.headers.add("Upload-Offset", "0")
                if length == 0 && upload.kind.isPartial {
                    store.partialFilled(upload)
                } else if length == 0 {
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

    /// `Upload-Concat: partial` or `final;<upload URLs>` (absolute or relative; the last segment is the ID).
    private func concatenation(_ header: String) throws(HTTPError) -> Upload.Kind {
        let value = header.trimmingASCIIWhitespace()
        if value == "partial" { return .partial }
        guard value.hasPrefix("final;") else {
            throw HTTPError.badRequest(
                "bad_upload_concat", "Upload-Concat must be 'partial' or 'final;' followed by the partial uploads' URLs.")
        }
        let urls = value.dropFirst("final;".count).split(separator: " ")
        guard !urls.isEmpty, urls.count <= 10_000 else {
            throw HTTPError.badRequest("bad_upload_concat", "Upload-Concat: final; needs between 1 and 10000 URLs.")
        }
        var parts: [String] = []
        for url in urls {
            let path = url.split(separator: "?").first ?? url
            let id = path.split(separator: "/").last.map(String.init) ?? ""
            guard Upload.isValidID(Substring(id)), let part = store.upload(id) else {
                throw HTTPError.badRequest("unknown_partial_upload", "'\(url.prefix(100))' is not an upload of this server.")
            }
            guard part.kind.isPartial else {
                throw HTTPError.badRequest(
                    "not_a_partial_upload", "'\(url.prefix(100))' was not created with Upload-Concat: partial.")
            }
            guard part.snapshot.length != nil else {
                throw HTTPError.badRequest(
                    "partial_length_unknown", "The partial upload '\(id)' has no length yet; declare it first.")
            }
            parts.append(id)
        }
        return .final(parts: parts, header: value)
    }

    /// `POST` with `Upload-Concat: final;...`: records the final upload and, once every part has all its
    /// bytes (now or later: concatenation-unfinished), assembles it in the background.
    private func createFinal(_ request: Request, kind: Upload.Kind, collectionHasSlash: Bool) throws(HTTPError) -> Reply {
        guard request.headers["Upload-Length"] == nil, request.headers["Upload-Defer-Length"] == nil else {
            throw HTTPError.badRequest(
                "bad_upload_length", "A final upload takes no Upload-Length: its length is the sum of its parts.")
        }
        guard !request.hasBody else {
            throw HTTPError(403, code: "final_upload_body", "A final upload takes no data; PATCH its parts instead.")
        }
        let length = kind.parts.reduce(UInt64(0)) { $0 + (store.upload($1)?.snapshot.length ?? 0) }
        try checkSize(length)
        try storage.checkFreeSpace(for: length)
        let id = Hex.random(bytes: 16)
        let (target, expectedSHA256, policy) = try placement(request, id: id)
        try storage.checkUploadTarget(target, policy: policy)
        return try start(
            request, id: id, kind: kind, length: length, target: target, expectedSHA256: expectedSHA256, policy: policy,
            collectionHasSlash: collectionHasSlash)
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
