import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

extension FilesAPI {
    /// `GET`/`HEAD /api/files/{path}`: a file (with ranges and conditional requests) or a folder listing.
    func download(_ request: Request, target: RelativePath) throws(HTTPError) -> Reply {
        guard let status = try storage.status(of: target) else {
            throw HTTPError.notFound("'\(target)' does not exist. List its folder to see what is there.")
        }
        if status.isDirectory { return try listing(target) }
        if request.path.hasSuffix("/") {
            throw HTTPError.notFound("'\(target)' is a file, not a folder; drop the trailing '/'.")
        }
        guard status.isRegularFile else {
            throw HTTPError(403, code: "not_a_file", "'\(target)' is not a regular file and cannot be downloaded.")
        }
        let descriptor = open(storage.absolute(target), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw Storage.httpError(SystemError("open", storage.absolute(target)), path: target)
        }
        let file = OpenFile(descriptor: descriptor)
        var info = stat()
        fstat(descriptor, &info)
        return .respond(fileResponse(request, file: file, status: FileStatus(info), name: target.name))
    }

    private func fileResponse(_ request: Request, file: OpenFile, status: FileStatus, name: String) -> Response {
        let etag = status.entityTag
        var headers = HTTPHeaders()
        headers.add("ETag", etag)
        headers.add("Last-Modified", HTTPDate.format(status.modifiedSeconds))
        headers.add("Accept-Ranges", "bytes")
        headers.add("Cache-Control", "private, no-cache")

        switch ConditionalRequest.evaluate(
            method: request.method, ifMatch: request.headers["If-Match"], ifNoneMatch: request.headers["If-None-Match"],
            ifModifiedSince: request.headers["If-Modified-Since"],
            ifUnmodifiedSince: request.headers["If-Unmodified-Since"], etag: etag,
            lastModified: status.modifiedSeconds)
        {
        case .notModified:
            return Response(status: 304, headers: headers)
        case .preconditionFailed:
            var response = Response(
                error: HTTPError(
                    412, code: "precondition_failed", "The file changed since you last read it; fetch it again."))
            for (key, value) in headers { response.headers.add(key, value) }
            return response
        case .proceed:
            break
        }

        let mediaType = MediaType.forFileName(name)
        headers.add("Content-Disposition", ContentDisposition.value(fileName: name, attachment: request.flag("download")))
        headers.add("X-Content-Type-Options", "nosniff")
        // Files are user content: never let one run script in the server's origin.
        headers.add("Content-Security-Policy", "sandbox")

        var ranges = RangeRequest.whole
        if ConditionalRequest.ifRangeAllows(request.headers["If-Range"], etag: etag, lastModified: status.modifiedSeconds) {
            ranges = RangeRequest.parse(request.headers["Range"], size: status.size)
        }
        switch ranges {
        case .whole:
            headers.add("Content-Type", mediaType)
            let source = FileSource(file: file, pieces: [.file(offset: 0, length: status.size)])
            return Response(status: 200, headers: headers, body: status.size == 0 ? .empty : .stream(length: status.size, source: source))
        case .unsatisfiable:
            var response = Response(
                error: HTTPError(
                    416, code: "range_not_satisfiable",
                    "The requested range is outside the file, which is \(status.size) bytes long."))
            response.headers.add("Content-Range", RangeRequest.unsatisfiedContentRange(size: status.size))
            return response
        case .partial(let parts) where parts.count == 1:
            let range = parts[0]
            headers.add("Content-Type", mediaType)
            headers.add("Content-Range", RangeRequest.contentRange(range, size: status.size))
            let length = range.upperBound - range.lowerBound + 1
            let source = FileSource(file: file, pieces: [.file(offset: range.lowerBound, length: length)])
            return Response(status: 206, headers: headers, body: .stream(length: length, source: source))
        case .partial(let parts):
            let boundary = "ferry-" + Hex.random(bytes: 12)
            var pieces: [FileSource.Piece] = []
            for (index, range) in parts.enumerated() {
                let head = (index == 0 ? "" : "\r\n") + "--\(boundary)\r\nContent-Type: \(mediaType)\r\n"
                    + "Content-Range: \(RangeRequest.contentRange(range, size: status.size))\r\n\r\n"
                pieces.append(.bytes(Array(head.utf8)))
                pieces.append(.file(offset: range.lowerBound, length: range.upperBound - range.lowerBound + 1))
            }
            pieces.append(.bytes(Array("\r\n--\(boundary)--\r\n".utf8)))
            headers.add("Content-Type", "multipart/byteranges; boundary=\(boundary)")
            let source = FileSource(file: file, pieces: pieces)
            return Response(status: 206, headers: headers, body: .stream(length: source.length, source: source))
        }
    }
}
