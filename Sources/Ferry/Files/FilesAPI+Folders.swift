import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

extension FilesAPI {
    /// `GET /api/files/{folder}/`: the folder's entries as JSON, sorted by name (byte order).
    func listing(_ folder: RelativePath) throws(HTTPError) -> Reply {
        let full = storage.absolute(folder)
        guard let directory = opendir(full) else {
            throw Storage.httpError(SystemError("opendir", full), path: folder)
        }
        defer { closedir(directory) }
        var entries: [(name: String, json: JSON)] = []
        while let entry = readdir(directory) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            let name = String(decoding: bytes, as: UTF8.self)
            if name == "." || name == ".." { continue }
            if folder.isRoot && name == RelativePath.reservedName { continue }
            var info = stat()
            guard stat(full + "/" + name, &info) == 0 else { continue }
            // A symlink that leads outside the root is not shown: its target is not the user's.
            if (try? storage.status(of: folder.appending(name))) == nil { continue }
            let status = FileStatus(info)
            entries.append(
                (
                    name,
                    .object([
                        ("name", .string(name)), ("type", .string(status.isDirectory ? "folder" : "file")),
                        ("size", .uint(status.isDirectory ? 0 : status.size)),
                        ("modified", .string(status.modifiedISO8601)),
                    ])
                ))
        }
        entries.sort { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        return .respond(
            Response(
                status: 200,
                json: .object([("path", .string(folder.description)), ("entries", .array(entries.map(\.json)))])))
    }

    /// `POST /api/folders/{path}`: creates a folder and any missing parents. 201 when created, 200 when it
    /// already was a folder, 409 when a file has that name.
    func createFolder(_ request: Request, target: RelativePath) throws(HTTPError) -> Reply {
        guard !target.isRoot else {
            throw HTTPError.badRequest("missing_name", "Name the folder to create: /api/folders/name.")
        }
        let storage = self.storage
        return .work {
            do throws(HTTPError) {
                if let existing = try storage.status(of: target) {
                    guard existing.isDirectory else {
                        throw HTTPError(
                            409, code: "file_exists", "'\(target)' is a file; choose another name for the folder.")
                    }
                    return Response(status: 200, json: .object([("path", .string(target.description)), ("created", .bool(false))]))
                }
                try storage.createParents(of: target)
                let full = storage.absolute(target)
                if mkdir(full, 0o755) != 0 && errno != EEXIST {
                    throw Storage.httpError(SystemError("mkdir", full), path: target)
                }
                storage.syncDirectory(containing: full)
                var response = Response(
                    status: 201, json: .object([("path", .string(target.description)), ("created", .bool(true))]))
                response.headers.add("Location", FilesAPI.url(of: target) + "/")
                return response
            } catch {
                return Response(error: error)
            }
        }
    }

    /// `DELETE /api/files/{path}`: a file, an empty folder, or with `?recursive=1` a whole folder.
    func delete(_ request: Request, target: RelativePath) throws(HTTPError) -> Reply {
        guard !target.isRoot else {
            throw HTTPError.badRequest("root_not_deletable", "The root folder cannot be deleted; delete what is in it.")
        }
        guard let status = try storage.status(of: target) else {
            throw HTTPError.notFound("'\(target)' does not exist; nothing was deleted.")
        }
        _ = try checkWritePreconditions(request, target: target)
        let storage = self.storage
        let recursive = request.flag("recursive")
        return .work {
            let full = storage.absolute(target)
            var result: Int32
            if !status.isDirectory {
                result = unlink(full)
            } else if recursive {
                result = FilesAPI.removeTree(full)
            } else {
                result = rmdir(full)
            }
            guard result == 0 else {
                return Response(error: Storage.httpError(SystemError("delete", full), path: target))
            }
            storage.syncDirectory(containing: full)
            return Response(status: 204)
        }
    }

    /// Removes a folder and everything in it, without following symlinks. Returns 0 or -1 with errno.
    static func removeTree(_ path: String) -> Int32 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return -1 }
        if (info.st_mode & S_IFMT) != S_IFDIR { return unlink(path) }
        guard let directory = opendir(path) else { return -1 }
        var names: [String] = []
        while let entry = readdir(directory) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            let name = String(decoding: bytes, as: UTF8.self)
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(directory)
        for name in names where removeTree(path + "/" + name) != 0 { return -1 }
        return rmdir(path)
    }
}
