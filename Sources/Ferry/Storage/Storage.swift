internal import CLinux
import HTTPServer
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The data root on disk: users' files as plain files, and the server's work area `<root>/.ferry/`.
///
/// Every path from a request is resolved here and checked to stay inside the root, symlinks included.
/// Thread-safety: immutable; its methods are plain system calls, safe from any thread. Methods that
/// may block on the disk (`fsync`) are marked so; call them from a worker thread.
public final class Storage: Sendable {
    /// The root, absolute and with symlinks resolved.
    public let root: String
    /// Where uploads in progress are written (`<root>/.ferry/tmp`), on the root's filesystem so that
    /// finishing an upload is one atomic `rename`.
    public let temporaryDirectory: String
    /// Holds an exclusive lock on `<root>/.ferry/lock` while this server runs.
    private let lockDescriptor: Int32
    /// How many temporary files of interrupted uploads were removed at start-up.
    public let sweptTemporaryFiles: Int
    /// Taken around each reservation's free-space check and `fallocate`: two uploads that would each fit
    /// alone must not both pass the check and then both fail half-way through allocating.
    private let reservations = Mutex(())

    public struct OpenError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Opens (creating if missing) the data root, takes its lock and sweeps temporary files a crash left.
    public init(root: String) throws(OpenError) {
        if mkdir(root, 0o755) != 0 && errno != EEXIST {
            throw OpenError(description: "cannot create the data root \(root): \(String(cString: strerror(errno)))")
        }
        guard let resolved = realpath(root, nil) else {
            throw OpenError(description: "cannot open the data root \(root): \(String(cString: strerror(errno)))")
        }
        self.root = String(cString: resolved)
        free(resolved)
        let work = self.root + "/" + RelativePath.reservedName
        temporaryDirectory = work + "/tmp"
        for directory in [work, temporaryDirectory] where mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw OpenError(description: "cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        lockDescriptor = open(work + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockDescriptor >= 0, flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            throw OpenError(description: "another ferry process is serving \(self.root); stop it first")
        }
        sweptTemporaryFiles = Storage.removeFiles(in: temporaryDirectory)
    }

    deinit { close(lockDescriptor) }

    /// Removes every file in the temporary directory: uploads that a crash or kill interrupted.
    private static func removeFiles(in temporaryDirectory: String) -> Int {
        guard let directory = opendir(temporaryDirectory) else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            if unlink(temporaryDirectory + "/" + name) == 0 { count += 1 }
        }
        return count
    }

    /// The absolute path of `path`, without checking that it exists.
    public func absolute(_ path: RelativePath) -> String {
        path.isRoot ? root : root + "/" + path.components.joined(separator: "/")
    }

    /// Whether the absolute path `candidate`, once symlinks are resolved, is inside the root.
    private func isInsideRoot(_ candidate: String) -> Bool {
        guard let resolved = realpath(candidate, nil) else { return false }
        defer { free(resolved) }
        let path = String(cString: resolved)
        return path == root || path.hasPrefix(root + "/")
    }

    /// What is at `path`, after checking that every existing component stays inside the root.
    public func status(of path: RelativePath) throws(HTTPError) -> FileStatus? {
        let full = absolute(path)
        var info = stat()
        guard stat(full, &info) == 0 else {
            if errno == ENOENT || errno == ENOTDIR {
                // Missing, but say so only if the way to it stays inside the root: otherwise a client could
                // learn which files exist outside it (400 for those, 404 for the rest).
                var ancestor = path.parent
                var ancestorInfo = stat()
                while !ancestor.isRoot, stat(absolute(ancestor), &ancestorInfo) != 0 { ancestor = ancestor.parent }
                if !ancestor.isRoot, !isInsideRoot(absolute(ancestor)) { throw Storage.outsideRoot(path) }
                return nil
            }
            throw HTTPError(500, code: "io_error", "Cannot read \(path): \(String(cString: strerror(errno))).")
        }
        guard isInsideRoot(full) else { throw Storage.outsideRoot(path) }
        return FileStatus(info)
    }

    static func outsideRoot(_ path: RelativePath) -> HTTPError {
        HTTPError.badRequest("outside_root", "'\(path)' leads outside your files (through a symlink); it is refused.")
    }

    /// Checks that the folders leading to `path` are folders (or missing) and inside the root, without
    /// creating anything. Cheap enough for an event-loop thread.
    public func checkParent(of path: RelativePath) throws(HTTPError) {
        var prefix: [String] = []
        for component in path.components.dropLast() {
            prefix.append(component)
            let here = RelativePath(unchecked: prefix)
            guard let status = try status(of: here) else { return }
            guard status.isDirectory else {
                throw HTTPError(
                    409, code: "not_a_folder", "'\(here)' is a file, so it cannot hold '\(path)'; choose another path.")
            }
        }
    }

    /// Refuses early (before any body byte) what the collision policy would refuse when the upload ends.
    public func checkUploadTarget(_ target: RelativePath, policy: CollisionPolicy) throws(HTTPError) {
        try checkParent(of: target)
        guard let existing = try status(of: target) else { return }
        if existing.isDirectory { throw Storage.folderInTheWay(target) }
        if policy == .refuse { throw Storage.exists(target) }
    }

    /// Creates the folders leading to `path` as needed (each checked to stay inside the root), fsyncing
    /// each new folder's parent. Blocking: call from a worker thread.
    public func createParents(of path: RelativePath) throws(HTTPError) {
        try checkParent(of: path)
        var prefix: [String] = []
        for component in path.components.dropLast() {
            prefix.append(component)
            let full = absolute(RelativePath(unchecked: prefix))
            if mkdir(full, 0o755) == 0 {
                syncDirectory(containing: full)
            } else if errno != EEXIST {
                throw Storage.httpError(SystemError("mkdir", full), path: path)
            }
        }
    }

    /// fsyncs the folder that holds `fullPath`, so a rename or creation in it survives a crash.
    public func syncDirectory(containing fullPath: String) {
        var parent = fullPath
        while let last = parent.utf8.last, last != UInt8(ascii: "/") { parent.removeLast() }
        if parent.count > 1 { parent.removeLast() }
        let descriptor = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }

    /// Creates a new, empty temporary file for an upload in progress.
    func createTemporaryFile() throws(HTTPError) -> (descriptor: Int32, path: String) {
        let path = temporaryDirectory + "/" + Hex.random(bytes: 12) + ".part"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let error = SystemError("open", path)
            if error.isNoSpace { throw HTTPError.insufficientStorage() }
            throw HTTPError(500, code: "io_error", "Cannot create a temporary file: \(error).")
        }
        return (descriptor, path)
    }

    /// Refuses (507) a declared length that is larger than the free space.
    func checkFreeSpace(for length: UInt64) throws(HTTPError) {
        var info = statvfs()
        guard statvfs(temporaryDirectory, &info) == 0 else { return }
        let available = UInt64(info.f_bavail) * UInt64(info.f_frsize)
        if length > available { throw HTTPError.insufficientStorage(needed: length, available: available) }
    }

    /// Reserves `length` bytes for a file so that a declared upload that cannot fit fails before its body
    /// is read (507), and one that fits cannot run out of space half-way.
    func reserve(_ length: UInt64, descriptor: Int32, at offset: UInt64 = 0) throws(HTTPError) {
        guard length > 0 else { return }
        try reservations.withLock { _ throws(HTTPError) in try reserveAlone(length, descriptor: descriptor, at: offset) }
    }

    private func reserveAlone(_ length: UInt64, descriptor: Int32, at offset: UInt64) throws(HTTPError) {
        var info = statvfs()
        if fstatvfs(descriptor, &info) == 0 {
            let available = UInt64(info.f_bavail) * UInt64(info.f_frsize)
            if length > available { throw HTTPError.insufficientStorage(needed: length, available: available) }
        }
        if fallocate(descriptor, CLINUX_FALLOC_FL_KEEP_SIZE, off_t(clamping: offset), off_t(clamping: length)) != 0 {
            let error = SystemError("fallocate", "")
            if error.isNoSpace { throw HTTPError.insufficientStorage(needed: length, available: nil) }
            // Filesystems without fallocate: the free-space check above is all we can do.
        }
    }

    /// Moves a finished temporary file to `path` under `policy`, then fsyncs the folder. Returns the path
    /// the file got (differs from `path` under `.rename`). Blocking: call from a worker thread.
    func publish(_ temporaryPath: String, at path: RelativePath, policy: CollisionPolicy) throws(HTTPError) -> RelativePath {
        try createParents(of: path)
        var target = path
        var attempt = 0
        while true {
            let full = absolute(target)
            if policy == .overwrite {
                var info = stat()
                if stat(full, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                    throw Storage.folderInTheWay(target)
                }
                guard rename(temporaryPath, full) == 0 else { throw Storage.httpError(SystemError("rename", full), path: target) }
                break
            }
            if Storage.renameWithoutReplacing(temporaryPath, full) { break }
            guard errno == EEXIST else { throw Storage.httpError(SystemError("rename", full), path: target) }
            guard policy == .rename, attempt < 10_000 else {
                if (try? status(of: target))??.isDirectory == true { throw Storage.folderInTheWay(target) }
                throw Storage.exists(target)
            }
            attempt += 1
            target = path.renamed(CollisionPolicy.alternative(to: path.name, attempt: attempt))
        }
        syncDirectory(containing: absolute(target))
        return target
    }

    /// `rename` that fails with EEXIST instead of replacing; falls back to link+unlink where the
    /// filesystem lacks RENAME_NOREPLACE.
    static func renameWithoutReplacing(_ from: String, _ to: String) -> Bool {
        if renameat2(AT_FDCWD, from, AT_FDCWD, to, UInt32(CLINUX_RENAME_NOREPLACE)) == 0 { return true }
        guard errno == EINVAL || errno == ENOSYS else { return false }
        guard link(from, to) == 0 else { return false }
        unlink(from)
        return true
    }

    static func exists(_ path: RelativePath) -> HTTPError {
        HTTPError(
            409, code: "file_exists",
            "'\(path)' already exists. Add ?overwrite=1 to replace it or ?rename=1 to keep both.",
            details: [("path", .string(path.description))])
    }

    static func folderInTheWay(_ path: RelativePath) -> HTTPError {
        HTTPError(
            409, code: "folder_exists", "'\(path)' is a folder; a file cannot replace it. Choose another name.",
            details: [("path", .string(path.description))])
    }

    /// Maps a failed system call on `path` to the answer a client gets.
    static func httpError(_ error: SystemError, path: RelativePath) -> HTTPError {
        switch error.code {
        case ENOSPC, EDQUOT: return .insufficientStorage()
        case ENOENT: return .notFound("'\(path)' does not exist.")
        case EEXIST: return exists(path)
        case ENOTEMPTY:
            return HTTPError(
                409, code: "folder_not_empty", "'\(path)' is a folder that is not empty; add ?recursive=1 to delete it.")
        case ENOTDIR: return HTTPError(409, code: "not_a_folder", "A part of '\(path)' is a file, not a folder.")
        case EISDIR: return folderInTheWay(path)
        case EACCES, EPERM: return HTTPError(403, code: "permission_denied", "The server may not change '\(path)'.")
        case ENAMETOOLONG: return HTTPError.badRequest("name_too_long", "'\(path)' is too long for the filesystem.")
        case EINVAL: return HTTPError.badRequest("invalid_move", "That move is not possible (a folder into itself?).")
        default: return HTTPError(500, code: "io_error", "The server could not change '\(path)': \(error).")
        }
    }
}

extension RelativePath {
    /// For prefixes of an already validated path.
    init(unchecked components: [String]) {
        // Components of a validated path are valid; re-validation cannot fail.
        self = (try? RelativePath(components: components)) ?? RelativePath.rootPath
    }

    static let rootPath: RelativePath = try! RelativePath(components: [])
}
