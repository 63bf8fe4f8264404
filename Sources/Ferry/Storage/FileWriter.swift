import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

/// One file being written to a temporary file as its bytes arrive: each block is written straight
/// through, and hashed (SHA-256) right behind the writer by a `TrailingHasher` on another thread.
///
/// Threading: `write` runs on the event-loop thread; `commit` (fsync + rename) on a worker thread;
/// never both at once. `@unchecked Sendable` for that hand-over.
final class FileWriter: @unchecked Sendable {
    let storage: Storage
    private var descriptor: Int32
    let temporaryPath: String
    private let hasher: TrailingHasher
    private(set) var size: UInt64 = 0

    /// Creates the temporary file; with a declared length, checks and reserves the space first (507).
    init(storage: Storage, declaredLength: UInt64?) throws(HTTPError) {
        self.storage = storage
        (descriptor, temporaryPath) = try storage.createTemporaryFile()
        hasher = TrailingHasher(path: temporaryPath)
        if let declaredLength {
            do {
                try storage.reserve(declaredLength, descriptor: descriptor)
            } catch {
                discard()
                throw error
            }
        }
    }

    deinit { discard() }

    /// Writes and hashes one block. A full disk becomes 507.
    func write(_ block: UnsafeRawBufferPointer) throws(HTTPError) {
        guard var base = block.baseAddress else { return }
        var remaining = block.count
        while remaining > 0 {
            let written = Glibc.write(descriptor, base, remaining)
            if written < 0 {
                if errno == EINTR { continue }
                let error = SystemError("write", temporaryPath)
                if error.isNoSpace { throw HTTPError.insufficientStorage() }
                throw HTTPError(500, code: "io_error", "The server could not store the upload: \(error).")
            }
            remaining -= written
            base += written
        }
        size += UInt64(block.count)
        hasher.advance(to: size)
    }

    /// What a stored file looks like to the client.
    struct Stored: Sendable {
        let path: RelativePath
        let size: UInt64
        let sha256: String
        let modified: String

        var json: JSON {
            .object([
                ("path", .string(path.description)), ("size", .uint(size)), ("sha256", .string(sha256)),
                ("modified", .string(modified)),
            ])
        }
    }

    /// Makes the data durable and puts it under `path`: fsync, rename (under `policy`), fsync of the
    /// folder. Blocking: call from a worker thread. On failure the temporary file is removed.
    func commit(at path: RelativePath, policy: CollisionPolicy) throws(HTTPError) -> Stored {
        defer { discard() }
        TestHooks.beforeCommit()
        hasher.wake()
        // A reservation past the data (fallocate KEEP_SIZE) is released by truncating to the real size.
        if ftruncate(descriptor, off_t(size)) != 0 || fsync(descriptor) != 0 {
            let error = SystemError("fsync", temporaryPath)
            if error.isNoSpace { throw HTTPError.insufficientStorage() }
            throw HTTPError(500, code: "io_error", "The server could not store the upload: \(error).")
        }
        guard let sha256 = hasher.finish(size: size) else {
            throw HTTPError(500, code: "io_error", "The server could not read back the upload to hash it.")
        }
        var info = stat()
        fstat(descriptor, &info)
        let finalPath = try storage.publish(temporaryPath, at: path, policy: policy)
        close(descriptor)
        descriptor = -1
        return Stored(
            path: finalPath, size: size, sha256: sha256, modified: FileStatus(info).modifiedISO8601)
    }

    /// Closes and removes the temporary file, if still there. Idempotent.
    func discard() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
        unlink(temporaryPath)
    }
}
