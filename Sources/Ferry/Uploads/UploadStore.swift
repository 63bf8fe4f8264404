import Dispatch
import HTTPServer
import MetadataStore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Resumable uploads on disk: each upload's bytes in `<root>/.ferry/uploads/<id>`, its record in SQLite
/// (`<root>/.ferry/ferry.db`), and every known upload in memory for quick `HEAD`s.
///
/// Durability: an upload's offset (in memory and in the database) only ever counts bytes that were
/// fsynced first. Methods that fsync or write the database block: call them from a worker thread.
/// Thread-safety: `Sendable`; the registry is behind a lock, each upload has its own.
final class UploadStore: Sendable {
    let storage: Storage
    let database: Database
    let directory: String
    /// Seconds an unfinished upload may stay idle before the reaper removes it.
    let expiry: Int64
    /// The largest upload accepted (`Tus-Max-Size`); nil for no limit but the disk.
    let maximumSize: UInt64?
    private let uploads = Mutex<[String: Upload]>([:])
    let logger: Logger

    static let migrations = [
        Migration(
            version: 1,
            [
                """
                CREATE TABLE uploads (
                    id TEXT PRIMARY KEY,
                    length INTEGER,
                    offset INTEGER NOT NULL,
                    hash_state BLOB NOT NULL,
                    metadata TEXT NOT NULL,
                    target TEXT NOT NULL,
                    expected_sha256 TEXT,
                    policy TEXT NOT NULL,
                    stored_path TEXT,
                    created INTEGER NOT NULL,
                    updated INTEGER NOT NULL
                )
                """
            ]),
        Migration(
            version: 2,
            [
                // Concatenation: 'partial', or the final upload's Upload-Concat header; its part IDs.
                "ALTER TABLE uploads ADD COLUMN concat TEXT",
                "ALTER TABLE uploads ADD COLUMN parts TEXT",
            ]),
    ]

    init(storage: Storage, expiry: Int64, maximumSize: UInt64?, logger: Logger, startupLogger: Logger) throws {
        self.storage = storage
        self.expiry = expiry
        self.maximumSize = maximumSize
        self.logger = logger
        directory = storage.root + "/" + RelativePath.reservedName + "/uploads"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw SystemError("mkdir", directory)
        }
        database = try Database(path: storage.root + "/" + RelativePath.reservedName + "/ferry.db")
        try database.migrate(UploadStore.migrations)
        try recover(log: startupLogger)
    }

    func dataPath(_ id: String) -> String { directory + "/" + id }

    /// Present while a checksummed PATCH is unverified: its bytes must not count, even after a crash.
    func verifyingMarker(_ id: String) -> String { directory + "/" + id + ".verifying" }

    func upload(_ id: String) -> Upload? { uploads.withLock { $0[id] } }

    func allUploads() -> [Upload] { uploads.withLock { Array($0.values) } }

    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec)
    }

    // MARK: Creation

    /// Makes a new upload: its data file (with the length reserved on disk when known) and its entry in
    /// memory. Quick enough for an event-loop thread; `persist` then records it durably. Throws 507 when
    /// the declared length cannot fit.
    func prepare(
        id: String, kind: Upload.Kind = .single, length: UInt64?, metadataHeader: String, target: RelativePath,
        expectedSHA256: String?, policy: CollisionPolicy
    ) throws(HTTPError) -> Upload {
        let path = dataPath(id)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let error = SystemError("open", path)
            if error.isNoSpace { throw HTTPError.insufficientStorage() }
            throw HTTPError(500, code: "io_error", "Cannot create the upload: \(error).")
        }
        defer { close(descriptor) }
        // The space is checked now but reserved only request by request (PATCH), so that an upload
        // created and abandoned does not hold the disk for a day.
        if let length {
            do {
                try storage.checkFreeSpace(for: length)
            } catch {
                unlink(path)
                throw error
            }
        }
        let now = UploadStore.now()
        let upload = Upload(
            id: id, kind: kind, metadataHeader: metadataHeader, target: target, expectedSHA256: expectedSHA256,
            policy: policy, created: now,
            progress: .init(
                length: length, offset: 0, hash: .init(size: 0, state: SHA256().state), phase: .receiving, updated: now))
        uploads.withLock { $0[id] = upload }
        return upload
    }

    /// Records a prepared upload durably (its data file's folder fsynced, its row committed). Blocking.
    func persist(_ upload: Upload) throws(HTTPError) {
        let progress = upload.snapshot
        storage.syncDirectory(containing: dataPath(upload.id))
        do {
            try database.write { connection in
                try connection.execute(
                    """
                    INSERT INTO uploads (id, length, offset, hash_state, metadata, target, expected_sha256,
                        policy, created, updated, concat, parts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(upload.id), progress.length.map { .integer(Int64($0)) } ?? .null,
                        .integer(Int64(progress.offset)), .blob(progress.hash.state), .text(upload.metadataHeader),
                        .text(upload.target.description), upload.expectedSHA256.map { .text($0) } ?? .null,
                        .text(upload.policy.name), .integer(upload.created), .integer(progress.updated),
                        upload.kind.column, upload.kind.parts.isEmpty ? .null : .text(upload.kind.parts.joined(separator: " ")),
                    ])
            }
        } catch {
            remove(upload)
            throw HTTPError(500, code: "database_error", "The server could not record the upload: \(error).")
        }
        logger.info(
            "upload_created",
            [
                "upload": .string(upload.id), "length": progress.length.map { .uint($0) } ?? "deferred",
                "target": .string(upload.target.description),
            ])
    }

    // MARK: Progress

    /// Records that the upload's data file now durably holds `offset` bytes, with `hash` over a prefix
    /// of them (and, for a deferred upload, its declared `length`). Blocking.
    func saveProgress(
        _ upload: Upload, offset: UInt64, hash: TrailingHasher.Checkpoint, length: UInt64?
    ) throws(HTTPError) {
        let now = UploadStore.now()
        do {
            try database.write { connection in
                try connection.execute(
                    "UPDATE uploads SET offset = ?, hash_state = ?, length = ?, updated = ? WHERE id = ?",
                    [
                        .integer(Int64(offset)), .blob(hash.state),
                        length.map { .integer(Int64($0)) } ?? .null, .integer(now), .text(upload.id),
                    ])
            }
        } catch {
            // SQLITE_FULL: the database shares the data's filesystem, which is full.
            if (error as? DatabaseError)?.code == 13 {
                throw HTTPError(
                    507, code: "insufficient_storage",
                    "The server's disk is full, so this request's bytes could not be recorded and none of them "
                        + "were kept. Free some space (or ask the operator to), then ask HEAD for the offset and resume.")
            }
            throw HTTPError(500, code: "database_error", "The server could not record the upload's progress: \(error).")
        }
        upload.progress.withLock {
            $0.offset = offset
            $0.hash = hash
            $0.length = length
            $0.updated = now
        }
    }

    /// The upload has all its bytes: check the whole-file SHA-256 if one was announced, then move the
    /// file into place under the collision policy. A rename, so it takes the same time whatever the size.
    /// Blocking.
    func complete(_ upload: Upload, policy override: CollisionPolicy? = nil) throws(HTTPError) -> RelativePath {
        let progress = upload.snapshot
        if case .complete(let path) = progress.phase { return path }
        guard let length = progress.length, progress.offset == length else {
            throw HTTPError(409, code: "upload_incomplete", "The upload is not complete yet.")
        }
        // The recorded digest covers every recorded byte: the staging writer hashes before the offset is
        // recorded, and recovery hashes what a crash left past it.
        guard let digest = SHA256(state: progress.hash.state),
            let actual = TrailingHasher(path: dataPath(upload.id), offset: progress.hash.size, digest: digest)
                .finish(size: length)
        else {
            throw HTTPError(500, code: "io_error", "The server could not read the upload back to hash it.")
        }
        if let expected = upload.expectedSHA256, expected != actual {
            remove(upload)
            throw HTTPError(
                460, code: "checksum_mismatch",
                "The uploaded file's SHA-256 is \(actual), not the \(expected) given in Upload-Metadata; nothing "
                    + "was stored. Upload the file again.",
                details: [("expected", .string(expected)), ("actual", .string(actual))])
        }
        let stored: RelativePath
        do {
            stored = try storage.publish(dataPath(upload.id), at: upload.target, policy: override ?? upload.policy)
        } catch where error.status == 409 {
            // Another file took the name while the upload ran. Its bytes are all here; the client chooses.
            throw HTTPError(
                409, code: error.code,
                "The upload is complete, but '\(upload.target)' now exists. To store it, send an empty PATCH with "
                    + "Upload-Offset: \(length) to this upload's URL with ?rename=1 (keep both) or ?overwrite=1.",
                details: [("path", .string(upload.target.description))])
        }
        storage.syncDirectory(containing: dataPath(upload.id))
        do {
            try database.write { connection in
                try connection.execute(
                    "UPDATE uploads SET stored_path = ?, updated = ? WHERE id = ?",
                    [.text(stored.description), .integer(UploadStore.now()), .text(upload.id)])
            }
        } catch {
            logger.error("upload_record_failed", ["upload": .string(upload.id), "error": .string("\(error)")])
        }
        upload.progress.withLock { $0.phase = .complete(stored) }
        logger.info(
            "upload_complete",
            ["upload": .string(upload.id), "bytes": .uint(length), "path": .string(stored.description), "sha256": .string(actual)])
        return stored
    }

    /// Forgets an upload: its data file (if unfinished), its row and its entry. The stored file of a
    /// completed upload is the user's and stays. Blocking.
    func remove(_ upload: Upload) {
        uploads.withLock { _ = $0.removeValue(forKey: upload.id) }
        if case .complete = upload.snapshot.phase {
            // The data file became the user's file.
        } else {
            unlink(dataPath(upload.id))
            unlink(verifyingMarker(upload.id))
            storage.syncDirectory(containing: dataPath(upload.id))
        }
        do {
            try database.write { try $0.execute("DELETE FROM uploads WHERE id = ?", [.text(upload.id)]) }
        } catch {
            logger.error("upload_record_failed", ["upload": .string(upload.id), "error": .string("\(error)")])
        }
    }

    // MARK: Start-up and expiry

    /// Loads every upload and reconciles it with its data file after a crash: bytes the file holds beyond
    /// the recorded offset were written before the crash; they are fsynced, hashed and counted, so a
    /// client resumes from everything that reached the disk. Data files without a record are removed.
    private func recover(log: Logger) throws {
        let rows = try database.read { try $0.query("SELECT * FROM uploads") }
        var known: [String: Upload] = [:]
        for row in rows {
            guard let id = row["id"].text, let target = try? RelativePath(plain: row["target"].text ?? ""),
                let hashState = row["hash_state"].blob, let offset = row["offset"].integer.map({ UInt64($0) })
            else { continue }
            let length = row["length"].integer.map { UInt64($0) }
            var phase = Upload.Phase.receiving
            if let stored = row["stored_path"].text, let path = try? RelativePath(plain: stored) {
                phase = .complete(path)
            }
            let upload = Upload(
                id: id, kind: Upload.Kind(column: row["concat"].text, parts: row["parts"].text),
                metadataHeader: row["metadata"].text ?? "", target: target,
                expectedSHA256: row["expected_sha256"].text, policy: CollisionPolicy(name: row["policy"].text ?? ""),
                created: row["created"].integer ?? 0,
                progress: .init(
                    length: length, offset: offset,
                    hash: .init(size: offset, state: hashState), phase: phase,
                    updated: row["updated"].integer ?? 0))
            known[id] = upload
        }
        uploads.withLock { $0 = known }
        for upload in known.values where upload.snapshot.phase == .receiving && upload.kind.parts.isEmpty {
            reconcile(upload, log: log)
        }
        removeOrphans(known: Set(known.keys), log: log)
        // Concatenations a crash interrupted start over; parts of finished ones are removed.
        for upload in known.values where !upload.kind.parts.isEmpty {
            if case .complete = upload.snapshot.phase {
                for part in upload.kind.parts { if let partial = self.upload(part) { remove(partial) } }
            } else {
                assembleIfReady(upload)
            }
        }
    }

    private func reconcile(_ upload: Upload, log: Logger) {
        let path = dataPath(upload.id)
        let progress = upload.snapshot
        let descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else {
            // A crash between the final rename and its record: the data already sits at its target.
            if let length = progress.length, progress.offset == length,
                let stored = try? storage.status(of: upload.target), stored.size == length
            {
                upload.progress.withLock { $0.phase = .complete(upload.target) }
                log.info("upload_completion_recovered", ["upload": .string(upload.id)])
                return
            }
            log.warning("upload_data_missing", ["upload": .string(upload.id)])
            remove(upload)
            return
        }
        defer { close(descriptor) }
        if access(verifyingMarker(upload.id), F_OK) == 0 {
            // A checksummed PATCH was cut by the crash before it was verified: none of it counts.
            ftruncate(descriptor, off_t(progress.offset))
            fsync(descriptor)
            unlink(verifyingMarker(upload.id))
            log.info("upload_unverified_bytes_dropped", ["upload": .string(upload.id), "offset": .uint(progress.offset)])
            return
        }
        var info = stat()
        fstat(descriptor, &info)
        var size = UInt64(info.st_size)
        if let length = progress.length, size > length { size = length }
        // Also gives back the space a PATCH cut by the crash had reserved past its last byte.
        ftruncate(descriptor, off_t(size))
        fsync(descriptor)
        guard size != progress.offset || progress.hash.size != size else { return }
        // Hash what the file holds beyond the recorded digest's prefix (or all of it, if it holds less).
        let hashed = progress.hash.size
        let digest = size >= hashed ? SHA256(state: progress.hash.state) : nil
        guard let state = TrailingHasher(path: path, offset: digest == nil ? 0 : hashed, digest: digest ?? SHA256())
            .checkpoint(size: size)
        else { return }
        do {
            try saveProgress(upload, offset: size, hash: .init(size: size, state: state), length: progress.length)
            log.info(
                "upload_recovered", ["upload": .string(upload.id), "offset": .uint(size), "recorded": .uint(progress.offset)])
        } catch {
            log.error("upload_recovery_failed", ["upload": .string(upload.id), "error": .string("\(error)")])
        }
    }

    private func removeOrphans(known: Set<String>, log: Logger) {
        guard let handle = opendir(directory) else { return }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let id = name.hasSuffix(".verifying") ? String(name.dropLast(".verifying".count)) : name
            if name == "." || name == ".." || known.contains(id) { continue }
            unlink(directory + "/" + name)
            log.info("upload_orphan_removed", ["file": .string(name)])
        }
    }

    /// Removes unfinished uploads idle for longer than `expiry`, and the records of finished ones as old.
    /// Blocking; run by a timer on a worker thread.
    func reapExpired() {
        let deadline = UploadStore.now() - expiry
        let expired = uploads.withLock { all in
            all.values.filter { upload in
                let progress = upload.snapshot
                return progress.updated < deadline && progress.writer == nil
            }
        }
        for upload in expired {
            remove(upload)
            logger.info("upload_expired", ["upload": .string(upload.id)])
        }
    }

    /// When an unfinished upload expires, as an HTTP date.
    func expires(_ upload: Upload) -> String {
        HTTPDate.format(upload.snapshot.updated + expiry)
    }
}

extension Upload.Kind {
    var column: DatabaseValue {
        switch self {
        case .single: return .null
        case .partial: return .text("partial")
        case .final(_, let header): return .text(header)
        }
    }

    init(column: String?, parts: String?) {
        switch column {
        case nil: self = .single
        case "partial": self = .partial
        case let header?: self = .final(parts: (parts ?? "").split(separator: " ").map(String.init), header: header)
        }
    }
}

extension CollisionPolicy {
    var name: String {
        switch self {
        case .refuse: return "refuse"
        case .overwrite: return "overwrite"
        case .rename: return "rename"
        }
    }

    init(name: String) {
        switch name {
        case "overwrite": self = .overwrite
        case "rename": self = .rename
        default: self = .refuse
        }
    }
}
