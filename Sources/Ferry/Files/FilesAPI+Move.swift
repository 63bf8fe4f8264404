import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

extension FilesAPI {
    /// `POST /api/move` with JSON `{"from": "a/b.txt", "to": "c/d.txt"}` (and optionally `"overwrite": true`
    /// or `?overwrite=1`): renames or moves a file or folder.
    func move(_ request: Request) throws(HTTPError) -> Reply {
        if let length = request.contentLength, length > 64 * 1024 {
            throw HTTPError(413, code: "body_too_large", "A move request's JSON body may be at most 65536 bytes.")
        }
        let storage = self.storage
        let overwriteByQuery = request.flag("overwrite")
        return .consume(
            CollectedBody { bytes in
                do throws(HTTPError) {
                    let (from, to, overwrite) = try FilesAPI.parseMove(bytes)
                    return try FilesAPI.performMove(
                        storage: storage, from: from, to: to, overwrite: overwrite || overwriteByQuery)
                } catch {
                    return Response(error: error)
                }
            })
    }

    static func parseMove(_ bytes: [UInt8]) throws(HTTPError) -> (RelativePath, RelativePath, Bool) {
        let usage = "Send JSON like {\"from\": \"old/name.txt\", \"to\": \"new/name.txt\"}."
        let json: JSON
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw HTTPError.badRequest("bad_json", "The body is not valid JSON (\(error)). \(usage)")
        }
        guard let from = json["from"]?.stringValue, let to = json["to"]?.stringValue else {
            throw HTTPError.badRequest("bad_move", "Both \"from\" and \"to\" must be strings. \(usage)")
        }
        let overwrite = json["overwrite"] == .bool(true)
        return (try RelativePath(plain: from), try RelativePath(plain: to), overwrite)
    }

    static func performMove(storage: Storage, from: RelativePath, to: RelativePath, overwrite: Bool) throws(HTTPError) -> Response {
        guard !from.isRoot, !to.isRoot else {
            throw HTTPError.badRequest("bad_move", "The root folder cannot be moved, nor replaced.")
        }
        guard let source = try storage.status(of: from) else {
            throw HTTPError.notFound("'\(from)' does not exist; nothing was moved.")
        }
        if to.components.starts(with: from.components) && to != from {
            throw HTTPError.badRequest("bad_move", "'\(from)' cannot be moved inside itself.")
        }
        try storage.createParents(of: to)
        let fromPath = storage.absolute(from)
        let toPath = storage.absolute(to)
        if let existing = try storage.status(of: to), from != to {
            guard overwrite else {
                throw HTTPError(
                    409, code: "file_exists", "'\(to)' already exists. Send \"overwrite\": true to replace it.",
                    details: [("path", .string(to.description))])
            }
            if existing.inode == source.inode {
                // Two hard links to one file: rename(2) would do nothing; the move drops the source link.
                guard unlink(fromPath) == 0 else { throw Storage.httpError(SystemError("unlink", fromPath), path: from) }
                storage.syncDirectory(containing: fromPath)
                return Response(
                    status: 200,
                    json: .object([("from", .string(from.description)), ("to", .string(to.description)), ("type", .string("file"))]))
            }
            if existing.isDirectory != source.isDirectory || existing.isDirectory {
                throw HTTPError(
                    409, code: "cannot_replace", "'\(to)' exists and cannot be replaced by '\(from)'; delete it first.")
            }
        }
        let moved = overwrite ? rename(fromPath, toPath) == 0 : Storage.renameWithoutReplacing(fromPath, toPath)
        guard moved else {
            throw Storage.httpError(SystemError("rename", toPath), path: to)
        }
        storage.syncDirectory(containing: toPath)
        storage.syncDirectory(containing: fromPath)
        return Response(
            status: 200,
            json: .object([
                ("from", .string(from.description)), ("to", .string(to.description)),
                ("type", .string(source.isDirectory ? "folder" : "file")),
            ]))
    }
}
