import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

/// One file being written to a temporary file as its bytes arrive, through a `StagedWriter` (direct
/// I/O, SHA-256 computed on the way).
///
/// Threading: `write` and `pauses` run on the event-loop thread; `commit` (fsync + rename) on a worker
/// thread; never both at once. `@unchecked Sendable` for that hand-over.
final class FileWriter: @unchecked Sendable {
    let storage: Storage
    private var descriptor: Int32
    let temporaryPath: String
    private let stream: StagedWriter
    /// The body's declared length, if any: reaching it seals the stream at once, on the event thread.
    private let declaredLength: UInt64?
    var size: UInt64 { stream.position }

    /// Creates the temporary file; with a declared length, checks and reserves the space first (507).
    init(storage: Storage, declaredLength: UInt64?) throws(HTTPError) {
        self.storage = storage
        (descriptor, temporaryPath) = try storage.createTemporaryFile()
        stream = StagedWriter(path: temporaryPath, descriptor: descriptor, offset: 0)
        self.declaredLength = declaredLength
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

    /// Stages one block for the disk and the hash. A full disk becomes 507. The block that completes the
    /// declared length sends the last bytes to the disk now, not once a worker gets to `commit`.
    func write(_ block: UnsafeRawBufferPointer) throws(HTTPError) {
        try stream.append(block)
        if let declaredLength, size == declaredLength { stream.seal() }
    }

    /// See `BodyConsumer.pauses(until:)`.
    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool {
        stream.pauses(until: resume)
    }

    /// No more bytes: the last ones go to the disk now, while the body's other parts (if any) arrive.
    func seal() {
        stream.seal()
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
        let sha256 = try stream.drain().finalizeHex()
        // A reservation past the data (fallocate KEEP_SIZE) is released by truncating to the real size.
        if ftruncate(descriptor, off_t(size)) != 0 || fsync(descriptor) != 0 {
            let error = SystemError("fsync", temporaryPath)
            if error.isNoSpace { throw HTTPError.insufficientStorage() }
            throw HTTPError(500, code: "io_error", "The server could not store the upload: \(error).")
        }
        var info = stat()
        fstat(descriptor, &info)
        let finalPath = try storage.publish(temporaryPath, at: path, policy: policy)
        close(descriptor)
        descriptor = -1
        return Stored(
            path: finalPath, size: size, sha256: sha256, modified: FileStatus(info).modifiedISO8601)
    }

    /// Closes and removes the temporary file, if still there, once the writes in flight are over (in the
    /// background: does not block). Idempotent.
    func discard() {
        guard descriptor >= 0 else { return }
        let (descriptor, path) = (self.descriptor, temporaryPath)
        self.descriptor = -1
        stream.abandon {
            close(descriptor)
            unlink(path)
        }
    }
}
