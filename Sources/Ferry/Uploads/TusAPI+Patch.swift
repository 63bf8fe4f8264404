import Dispatch
import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

extension TusAPI {
    /// `PATCH`: appends the body at `Upload-Offset`.
    func patch(_ request: Request, upload: Upload) throws(HTTPError) -> Reply {
        guard request.headers["Content-Type"] == TusProtocol.contentType else {
            throw HTTPError(
                415, code: "unsupported_media_type", "PATCH needs Content-Type: \(TusProtocol.contentType).")
        }
        guard let offset = try TusProtocol.parseSize(request.headers["Upload-Offset"], header: "Upload-Offset") else {
            throw HTTPError.badRequest("missing_upload_offset", "PATCH needs Upload-Offset: the offset from HEAD.")
        }
        if case .final = upload.kind {
            throw HTTPError(403, code: "final_upload", "A final upload cannot be patched; PATCH its partial uploads.")
        }
        let progress = upload.snapshot
        if case .complete(let path) = progress.phase, offset == progress.offset {
            // Nothing left to write: an empty body (declared, chunked or none) is answered as done; a byte
            // would go past the upload's length.
            var response = Response(status: 204)
            response.headers.add("Upload-Offset", String(progress.offset))
            response.headers.add("Ferry-File", FilesAPI.url(of: path))
            guard request.hasBody else { return .respond(response) }
            let tooLong = TusAPI.tooLong(length: progress.offset, offset: progress.offset)
            if let declared = request.contentLength, declared > 0 { throw tooLong }
            let done = response
            return .consume(CollectedBody(limit: 0, refusal: tooLong) { _ in done })
        }
        if case .receiving = progress.phase, case .single = upload.kind, upload.isFilled, offset == progress.offset,
            !request.hasBody
        {
            // Every byte is here but the file could not be placed (its name was taken): place it now,
            // under the collision policy this request asks for.
            let override = request.query.isEmpty ? nil : try CollisionPolicy.from(query: request.query)
            let store = self.store
            return .work {
                do throws(HTTPError) {
                    let path = try store.complete(upload, policy: override)
                    var response = Response(status: 204)
                    response.headers.add("Upload-Offset", String(progress.offset))
                    response.headers.add("Ferry-File", FilesAPI.url(of: path))
                    return response
                } catch {
                    return Response(error: error)
                }
            }
        }
        guard offset == progress.offset else { throw TusAPI.offsetMismatch(offset: progress.offset, requested: offset) }
        return .consume(try PatchUpload(store: store, upload: upload, request: request, creation: nil))
    }
}

extension TusAPI {
    /// 409: the client's `Upload-Offset` is not the upload's.
    static func offsetMismatch(offset: UInt64, requested: UInt64) -> HTTPError {
        var error = HTTPError(
            409, code: "offset_mismatch",
            "The upload is at offset \(offset), not \(requested); ask HEAD for the offset and continue from there.",
            details: [("offset", .uint(offset))])
        error.headers.add("Upload-Offset", String(offset))
        return error
    }
}

/// What a request finds when it asks for an upload's writer slot.
private enum WriterSlot {
    /// Another request holds it.
    case taken(ActiveWriter)
    /// Free, but the upload is no longer at the offset the request was checked against.
    case moved(UInt64)
    /// Now this request's.
    case granted
}

/// A PATCH (or creation-with-upload) body on its way into an upload's data file.
///
/// The bytes are written at the upload's offset through a `StagedWriter`, which hashes them on the way.
/// When the body ends, or the connection breaks, the file is fsynced and the new offset and digest state
/// are recorded: bytes that arrived are kept either way. Only then is the upload's writer slot released.
final class PatchUpload: BodyConsumer, @unchecked Sendable {
    // Sendable: consume/abort run on the event thread, finish on a worker, one after the other.
    private let store: UploadStore
    private let upload: Upload
    private let start: UInt64
    /// The length once known (declared at creation, or by this PATCH for a deferred upload).
    private let length: UInt64?
    /// Set for a creation-with-upload: the Location to answer with; the upload is not yet recorded.
    private let creation: String?
    private let descriptor: Int32
    private let stream: StagedWriter
    /// The SHA-256 state over the upload's first `start` bytes, as recorded.
    private let startDigest: [UInt8]
    private let connection: ConnectionControl
    private let writer: ActiveWriter
    /// The `Upload-Checksum` of this request's body, if the client sent one, and its running digest.
    private let checksum: (digest: ChecksumDigest, expected: [UInt8])?
    /// Where the space this request reserved ends (its declared length past `start`), if it reserved any.
    private let reservedThrough: UInt64?

    init(store: UploadStore, upload: Upload, request: Request, creation: String?) throws(HTTPError) {
        self.store = store
        self.upload = upload
        self.creation = creation
        connection = request.connection
        let progress = upload.snapshot
        start = progress.offset
        var length = progress.length
        if let declared = try TusProtocol.parseSize(request.headers["Upload-Length"], header: "Upload-Length"),
            creation == nil
        {
            if let known = length, known != declared {
                throw HTTPError.badRequest("bad_upload_length", "The upload's length is already \(known) bytes.")
            }
            guard declared >= start else {
                throw HTTPError.badRequest("bad_upload_length", "Upload-Length is smaller than the bytes already sent.")
            }
            if let maximum = store.maximumSize, declared > maximum {
                throw HTTPError(413, code: "upload_too_large", "The server accepts at most \(maximum) bytes per upload.")
            }
            length = declared
        }
        self.length = length
        checksum = try TusProtocol.parseChecksum(request.headers["Upload-Checksum"]).map {
            (ChecksumDigest($0.0), $0.1)
        }
        if let length, let declared = request.contentLength, declared > length - start {
            throw TusAPI.tooLong(length: length, offset: start)
        }
        let path = store.dataPath(upload.id)
        // Every recorded offset comes with the digest over exactly its bytes (recovery restores that).
        guard progress.hash.size == start, let digest = SHA256(state: progress.hash.state) else {
            throw HTTPError(500, code: "io_error", "The server cannot resume this upload's digest.")
        }
        startDigest = progress.hash.state
        descriptor = open(path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw HTTPError(500, code: "io_error", "The server cannot open this upload's data: \(SystemError("open", path)).")
        }
        // One writer at a time. A second request while the first holds the upload gets 423, to retry; if
        // the first has gone silent it is cut (keeping what it wrote), so the retry gets through.
        let writer = ActiveWriter(connection: request.connection)
        self.writer = writer
        let slot: WriterSlot = upload.progress.withLock { [start] progress in
            if let current = progress.writer { return .taken(current) }
            // The request was checked against an offset that another request has moved since.
            guard progress.offset == start else { return .moved(progress.offset) }
            progress.writer = writer
            return .granted
        }
        switch slot {
        case .taken(let current):
            close(descriptor)
            if current.isStalled { current.connection.cut() }
            throw TusAPI.locked
        case .moved(let offset):
            close(descriptor)
            throw TusAPI.offsetMismatch(offset: offset, requested: start)
        case .granted:
            // Now that no other request writes this file: bytes past the recorded offset do not count (a
            // crash's unrecorded tail), and neither does space an earlier request reserved there and did not
            // fill (a cut PATCH's): drop both, so that this request's reservation can use that space.
            ftruncate(descriptor, off_t(start))
            if let declared = request.contentLength {
                do {
                    try store.storage.reserve(declared, descriptor: descriptor, at: start)
                } catch {
                    upload.progress.withLock { $0.writer = nil }
                    close(descriptor)
                    throw error
                }
                reservedThrough = start + declared
            } else {
                reservedThrough = nil
            }
            stream = StagedWriter(path: path, descriptor: descriptor, offset: start, digest: digest)
        }
        if checksum != nil {
            // Until this body is verified, none of it may count, not even after a crash: the marker tells
            // recovery to cut the file back to the recorded offset.
            let marker = open(store.verifyingMarker(upload.id), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if marker >= 0 { close(marker) }
        }
    }

    private var written: UInt64 { stream.position - start }

    func consume(_ block: UnsafeRawBufferPointer) throws {
        if let length, written + UInt64(block.count) > length - start {
            throw TusAPI.tooLong(length: length, offset: start + written)
        }
        writer.touch()
        checksum?.digest.update(block)
        do throws(HTTPError) {
            try stream.append(block)
        } catch {
            throw PatchUpload.keptBytes(error)
        }
    }

    /// A full disk, said the way tus clients need to hear it: what HEAD counts is kept. (The answer may
    /// go out before the bytes that did arrive are recorded, and on a full disk even that can fail.)
    private static func keptBytes(_ error: HTTPError) -> HTTPError {
        guard error.status == 507 else { return error }
        return HTTPError(
            507, code: "insufficient_storage",
            "The server's disk is full. Every byte HEAD's Upload-Offset counts is kept: free some space (or ask "
                + "the operator to), then ask HEAD for the offset and resume from it.")
    }

    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool {
        stream.pauses(until: resume)
    }

    /// fsyncs what arrived and records the new offset. Returns the error to answer with, if any.
    /// `complete` is false for a body that was cut short.
    private func persist(complete: Bool) -> HTTPError? {
        defer {
            close(descriptor)
            upload.progress.withLock { $0.writer = nil }
        }
        // Every byte appended is written and hashed; after a failed write (a full disk), only the bytes
        // before it count, and their digest is read back from the file.
        var offset = stream.position
        var hash: TrailingHasher.Checkpoint
        var failure: HTTPError?
        do {
            hash = .init(size: offset, state: try stream.drain().state)
        } catch {
            failure = PatchUpload.keptBytes(error)
            offset = stream.writtenThrough
            guard let digest = SHA256(state: startDigest),
                let state = TrailingHasher(path: stream.path, offset: start, digest: digest).checkpoint(size: offset)
            else {
                return HTTPError(500, code: "io_error", "The server could not read the upload back to hash it.")
            }
            hash = .init(size: offset, state: state)
        }
        if let checksum {
            // A checksummed body counts only whole and verified: otherwise nothing of it is kept.
            let actual = checksum.digest.finalize()
            if !complete || actual != checksum.expected || offset != stream.position {
                ftruncate(descriptor, off_t(start))
                fsync(descriptor)
                unlink(store.verifyingMarker(upload.id))
                if creation != nil { try? store.persist(upload) }
                if let failure { return failure }
                guard complete else { return nil }
                return HTTPError(
                    460, code: "checksum_mismatch",
                    "This request's body does not match its Upload-Checksum (\(checksum.digest.algorithm.rawValue) "
                        + "\(Base64.encode(actual))); nothing of it was kept. Send the chunk again.")
            }
        }
        if let reservedThrough, offset < reservedThrough {
            // Cut short: give back the space reserved past what arrived, now, not when (or if) the upload
            // is resumed; a client that never comes back must not hold the disk until the upload expires.
            ftruncate(descriptor, off_t(offset))
        }
        guard fsync(descriptor) == 0 else {
            return HTTPError(500, code: "io_error", "The server could not make the bytes durable: \(SystemError("fsync", "")).")
        }
        do throws(HTTPError) {
            if creation != nil { try store.persist(upload) }
            try store.saveProgress(upload, offset: offset, hash: hash, length: length)
        } catch {
            // Unrecorded bytes do not count: drop them, so the file agrees with the offset HEAD reports and
            // the space they took (on a full disk, the space the client needs to resume) is free again.
            ftruncate(descriptor, off_t(start))
            fsync(descriptor)
            if checksum != nil { unlink(store.verifyingMarker(upload.id)) }
            return error
        }
        if checksum != nil { unlink(store.verifyingMarker(upload.id)) }
        return failure
    }

    func finish() -> Response {
        if let error = persist(complete: true) {
            var response = Response(error: error)
            response.headers.add("Upload-Offset", String(upload.snapshot.offset))
            return response
        }
        let progress = upload.snapshot
        var response = Response(status: creation == nil ? 204 : 201)
        if let creation { response.headers.add("Location", creation) }
        response.headers.add("Upload-Offset", String(progress.offset))
        if upload.kind.isPartial, upload.isFilled {
            store.partialFilled(upload)
        } else if let length = progress.length, progress.offset == length {
            do {
                let path = try store.complete(upload)
                response.headers.add("Ferry-File", FilesAPI.url(of: path))
            } catch {
                var failed = Response(error: error)
                failed.headers.add("Upload-Offset", String(progress.offset))
                return failed
            }
        } else {
            response.headers.add("Upload-Expires", store.expires(upload))
        }
        return response
    }

    /// The connection broke (or the body was refused): keep and record what arrived, off the event thread.
    func abort(reason: AbortReason) {
        BackgroundWork.run {
            guard let error = self.persist(complete: false) else { return }
            if error.status == 507 {
                // The disk filled: what HEAD counts was kept and recorded; the client resumes once there is room.
                self.store.logger.warning(
                    "upload_cut_disk_full",
                    ["upload": .string(self.upload.id), "offset": .uint(self.upload.snapshot.offset)])
            } else {
                self.store.logger.error(
                    "upload_persist_failed", ["upload": .string(self.upload.id), "error": .string(error.message)])
            }
        }
    }
}

