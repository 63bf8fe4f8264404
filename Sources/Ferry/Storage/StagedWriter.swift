internal import CLinux
import Dispatch
import HTTPServer
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Streams bytes into a file at increasing offsets through a few small page-aligned staging buffers, and
/// computes their SHA-256 on the way: each full buffer is written to disk with direct I/O (`O_DIRECT`)
/// on one worker (together with any others already waiting, in one `pwritev`) while another worker
/// hashes it, and the event-loop thread fills the next.
///
/// Why direct I/O: on these machines a write through the page cache followed by fsync reaches 0.37 to
/// 0.56 GB/s (and up to 1.8 on a good minute), while the same bytes written with `O_DIRECT` reach 0.9
/// GB/s in 128 KiB blocks, 1.1 to 1.3 in 256 KiB and 2.0 in 1 MiB (`dd`, 1 GiB). It also keeps uploads from filling a small server's memory with
/// dirty pages, and makes the fsync that ends each request cheap (only metadata is left to flush). The
/// buffers are the only copy of the data in user space, so the hash is computed from them, not read back.
///
/// Bytes that do not fill whole 4 KiB blocks at a 4 KiB-aligned offset (the start of a request resumed at
/// an odd offset, the end of every request) go through the page cache instead; `fsync` covers both. On a
/// filesystem without direct I/O everything goes through the page cache, with writeback started as each
/// buffer is written.
///
/// Memory: at most `buffersPerWriter` buffers of `bufferSize` per writer, those beyond
/// `guaranteedBuffers` drawn from a budget shared by all writers (`StagingBudget`), so that many
/// concurrent uploads stay within a fixed amount. A writer that has no buffer to fill next asks its body
/// to pause (`pauses(until:)`) until a write ends; the event thread never waits for the disk.
///
/// Threading: `append`, `pauses` and `seal` are called by one thread at a time (the connection's event
/// thread); `drain` from a worker once appending is over. The writes and the hashing run on
/// private serial queues. `@unchecked Sendable` for those hand-overs.
final class StagedWriter: @unchecked Sendable {
    /// 128 KiB: libmicrohttpd hands over at most about this much per call (half its 256 KiB connection
    /// pool), so one body block never needs more than the rest of the filling buffer and one more.
    static let bufferSize = 128 * 1024
    /// Buffers every writer may have without asking the shared budget: one filling, one being written.
    static let guaranteedBuffers = 2
    /// At most this many per writer (2 MiB), the ones beyond `guaranteedBuffers` from the shared budget:
    /// room for a few batches in flight, so that a body pauses rarely (each pause and resume costs the
    /// event thread a suspension and a wake-up; with 8 buffers a 1 GiB upload paused about 550 times,
    /// with 16 about 330, and went 0.79x -> 0.91x the C sink at 100 MiB).
    static let buffersPerWriter = 16
    /// Full buffers are handed to the disk and the hasher this many at a time (512 KiB), unless the writer
    /// has no buffer left to fill meanwhile: one wake-up of each worker and one direct write per batch;
    /// when the disk is behind, the batches waiting go together in one `pwritev`. Here a direct write of
    /// 128 KiB costs the machine 0.3 CPU-s per GiB written (most of it the virtual disk's request and
    /// interrupt) and runs at 0.9 GB/s; of 512 KiB, 0.1 CPU-s and 2.0 GB/s (a C loop of such writes, 1 GiB).
    static let batchBuffers = 4
    /// The alignment direct I/O needs of file offsets, lengths and memory (the largest logical block
    /// size in common use).
    static let alignment = 4096

    let path: String
    /// A descriptor without `O_DIRECT`, owned by the caller, for unaligned pieces and fsync.
    private let descriptor: Int32
    /// The same file opened with `O_DIRECT`, or -1 when the filesystem does not support it.
    private var directDescriptor: Int32
    private let digest: SHA256
    private let writes: DispatchQueue
    private let hashing: DispatchQueue
    private let inFlight = DispatchGroup()

    // Owned by the appending thread.
    private var current: Buffer?
    /// Full buffers not yet handed over (fewer than `batchBuffers`), in file order.
    private var filled: [Buffer] = []
    /// The file offset of the next byte appended.
    private(set) var position: UInt64
    private var sealed = false
    /// The file offset up to which every byte is written, in order (advanced by the writes).
    private let written: Atomic<UInt64>

    private struct Shared {
        var free: [Buffer] = []
        /// Buffers this writer has allocated (free, filling or in flight).
        var owned = 0
        /// Buffers handed to the disk and the hasher, not yet done.
        var inFlight = 0
        /// Full (or last) buffers waiting for the disk, in file order.
        var queued: [Buffer] = []
        /// Whether a drain of `queued` is scheduled or running on `writes`.
        var writing = false
        var failure: HTTPError?
        var resume: (@Sendable () -> Void)?
        var closed = false
    }
    private let shared = Mutex(Shared())

    /// Starts writing at `offset` of the file open as `descriptor` (which stays the caller's), with the
    /// SHA-256 state over the file's first `offset` bytes. `directIO: false` writes everything through
    /// the page cache, as on a filesystem without direct I/O.
    init(path: String, descriptor: Int32, offset: UInt64, digest: SHA256 = SHA256(), directIO: Bool = true) {
        self.path = path
        self.descriptor = descriptor
        self.digest = digest
        position = offset
        written = Atomic(offset)
        directDescriptor = directIO ? open(path, O_WRONLY | O_CLOEXEC | CLINUX_O_DIRECT) : -1
        writes = DispatchQueue(label: "ferry.write", target: StagedWriter.pool)
        hashing = DispatchQueue(label: "ferry.hash", target: StagedWriter.pool)
    }

    deinit {
        // Every closure that used the writer has run (they hold it), so nothing is in flight.
        if directDescriptor >= 0 { Glibc.close(directDescriptor) }
        for buffer in filled + (current.map { [$0] } ?? []) + shared.withLock({ $0.free }) { release(buffer) }
    }

    private static let pool = DispatchQueue(label: "ferry.staging", attributes: .concurrent)

    /// Copies `block` into the staging buffers, handing each full one to the disk and the hasher. Throws
    /// the error a previous write met (507 for a full disk).
    func append(_ block: UnsafeRawBufferPointer) throws(HTTPError) {
        if let failure = shared.withLock({ $0.failure }) { throw failure }
        var offset = 0
        while offset < block.count {
            let buffer: Buffer
            if let current {
                buffer = current
            } else {
                buffer = try takeBuffer()
                current = buffer
            }
            let count = min(block.count - offset, StagedWriter.bufferSize - buffer.end)
            (buffer.memory + buffer.end).copyMemory(from: block.baseAddress! + offset, byteCount: count)
            buffer.end += count
            offset += count
            position += UInt64(count)
            if buffer.end == StagedWriter.bufferSize {
                current = nil
                filled.append(buffer)
                if filled.count >= StagedWriter.batchBuffers { submitFilled() }
            }
        }
    }

    /// Flow control for the body feeding this writer: false if the next block can be taken at once;
    /// otherwise true, and `resume` is called (once, from a worker thread) as soon as it can. Once sealed:
    /// true while buffers are still being written (a body going on to another file waits for this one's
    /// bytes to land, so that many small files never pile up in memory).
    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool {
        if sealed {
            return shared.withLock { state in
                guard state.inFlight > 0 else { return false }
                state.resume = resume
                return true
            }
        }
        if !canTakeBuffer {
            // No buffer to fill next: the full ones go to the disk now, whose first finished write calls
            // `resume`. (With none free and at most one filling, some are full, here or in flight.)
            submitFilled()
        }
        return shared.withLock { state in
            // Checked again under the lock: a write may have ended since.
            if canTakeBuffer(state) { return false }
            state.resume = resume
            return true
        }
    }

    /// Whether `takeBuffer` would have a buffer at once.
    private var canTakeBuffer: Bool { shared.withLock { canTakeBuffer($0) } }

    private func canTakeBuffer(_ state: Shared) -> Bool {
        // With fewer than the guaranteed buffers, a new one is always granted.
        state.owned < StagedWriter.guaranteedBuffers || !state.free.isEmpty || state.failure != nil
            || state.owned < StagedWriter.buffersPerWriter && StagingBudget.shared.canGrant
    }

    /// No more bytes will be appended: hands the last, partly filled buffer to the disk, and lets each
    /// buffer go as soon as its work is done. Does not wait.
    func seal() {
        guard !sealed else { return }
        if let buffer = current, buffer.end > buffer.start {
            current = nil
            filled.append(buffer)
        }
        submitFilled()
        stopAppending()
    }

    private func stopAppending() {
        sealed = true
        for buffer in filled + (current.map { [$0] } ?? []) { release(buffer) }
        filled = []
        current = nil
        let idle = shared.withLock { state in
            state.closed = true
            defer { state.free = [] }
            return state.free
        }
        for buffer in idle { release(buffer) }
        // After the writes already queued.
        writes.async {
            if self.directDescriptor >= 0 { Glibc.close(self.directDescriptor) }
            self.directDescriptor = -1
        }
    }

    /// Seals, waits until every byte appended is written (not yet fsynced) and hashed, and returns the
    /// SHA-256 state over the file up to `position`. Blocking: call from a worker thread.
    func drain() throws(HTTPError) -> SHA256 {
        seal()
        inFlight.wait()
        if let failure = shared.withLock({ $0.failure }) { throw failure }
        return digest
    }

    /// After `drain` threw: where the bytes written in order end (those after a failed write do not count).
    var writtenThrough: UInt64 { written.load(ordering: .acquiring) }

    /// Lets go of a writer whose bytes are no longer wanted: the writes in flight finish in the
    /// background, then `then` runs (to close and remove the file). Does not block.
    func abandon(then: @escaping @Sendable () -> Void) {
        if !sealed { stopAppending() }
        BackgroundWork.run(after: inFlight, then)
    }

    private enum Taken { case reused(Buffer), new(budgeted: Bool), none }

    private func takeBuffer() throws(HTTPError) -> Buffer {
        while true {
            let taken: Taken = shared.withLock { state in
                if let buffer = state.free.popLast() { return .reused(buffer) }
                if state.owned < StagedWriter.guaranteedBuffers {
                    state.owned += 1
                    return .new(budgeted: false)
                }
                if state.owned < StagedWriter.buffersPerWriter && StagingBudget.shared.grant() {
                    state.owned += 1
                    return .new(budgeted: true)
                }
                return .none
            }
            switch taken {
            case .reused(let buffer):
                buffer.reset(at: position)
                return buffer
            case .new(let budgeted):
                guard let buffer = Buffer(at: position, budgeted: budgeted) else {
                    shared.withLock { $0.owned -= 1 }
                    if budgeted { StagingBudget.shared.giveBack() }
                    throw HTTPError(500, code: "io_error", "The server is out of memory for this upload; retry later.")
                }
                return buffer
            case .none:
                // Only when the body did not pause as asked (a block spanning several buffers, a new multipart
                // part): wait for a write.
                submitFilled()
                inFlight.wait()
            }
        }
    }

    /// Hands the full buffers to the disk and the hasher.
    private func submitFilled() {
        guard !filled.isEmpty else { return }
        let batch = filled
        filled = []
        for buffer in batch {
            inFlight.enter()
            buffer.pending.store(2, ordering: .relaxed)
        }
        let schedule = shared.withLock { state in
            state.inFlight += batch.count
            state.queued += batch
            defer { state.writing = true }
            return !state.writing
        }
        if schedule { writes.async { self.writeQueued() } }
        hashing.async {
            for buffer in batch {
                TestHooks.beforeHashing()
                self.digest.update(UnsafeRawBufferPointer(start: buffer.memory + buffer.start, count: buffer.end - buffer.start))
            }
            self.done(with: batch)
        }
    }

    /// One stage (write or hash) is over for `batch`: each buffer both are done with is free again.
    private func done(with batch: [Buffer]) {
        let finished = batch.filter { $0.pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 }
        guard !finished.isEmpty else { return }
        let (closed, resume) = shared.withLock { state in
            if !state.closed { state.free += finished }
            state.inFlight -= finished.count
            defer { state.resume = nil }
            return (state.closed, state.resume)
        }
        for buffer in finished {
            if closed { release(buffer) }
            inFlight.leave()
        }
        resume?()
    }

    private func release(_ buffer: Buffer) {
        if buffer.budgeted { StagingBudget.shared.giveBack() }
        buffer.deallocate()
    }

    /// On `writes`: writes the queued buffers, as many at a time as are waiting, until none is left.
    private func writeQueued() {
        while true {
            let batch: [Buffer] = shared.withLock { state in
                defer { state.queued = [] }
                if state.queued.isEmpty { state.writing = false }
                return state.queued
            }
            if batch.isEmpty { return }
            var first = 0
            // Buffers follow each other in the file; a run is written in one go (every buffer but the
            // first starts at its aligned file offset, every one but the last is full).
            for index in batch.indices where index == batch.count - 1 || !batch[index + 1].follows(batch[index]) {
                write(batch[first...index])
                first = index + 1
            }
            done(with: batch)
        }
    }

    /// Puts a run of consecutive buffers' bytes at their place in the file: the aligned middle with
    /// direct I/O, the unaligned ends through the page cache.
    private func write(_ run: ArraySlice<Buffer>) {
        guard shared.withLock({ $0.failure == nil }), let head = run.first, let last = run.last else { return }
        let alignment = UInt64(StagedWriter.alignment)
        let range = (start: head.fileOffset + UInt64(head.start), end: last.fileOffset + UInt64(last.end))
        var position = range.start
        if directDescriptor >= 0 {
            let alignedStart = min(range.end, (range.start + alignment - 1) / alignment * alignment)
            let alignedEnd = range.end / alignment * alignment
            if alignedEnd > alignedStart {
                if !writeAll(run, from: position, to: alignedStart) { return }
                position = alignedStart
                switch writeDirect(run, from: alignedStart, to: alignedEnd) {
                case .written(let through): position = through
                case .unsupported: break  // the rest, and every later run, through the page cache
                case .failed: return
                }
            }
        }
        if !writeAll(run, from: position, to: range.end) { return }
        written.store(range.end, ordering: .releasing)
        if directDescriptor < 0 {
            // Start writeback now, so the disk works while the network delivers, and dirty memory stays low.
            sync_file_range(
                descriptor, Int64(range.start), Int64(range.end - range.start), UInt32(CLINUX_SYNC_FILE_RANGE_WRITE))
        }
    }

    /// The memory holding the file's bytes `from..<to` in a run of buffers, as pieces in file order.
    private func pieces(of run: ArraySlice<Buffer>, from: UInt64, to: UInt64) -> [iovec] {
        run.compactMap { buffer in
            let lower = max(from, buffer.fileOffset + UInt64(buffer.start))
            let upper = min(to, buffer.fileOffset + UInt64(buffer.end))
            guard lower < upper else { return nil }
            return iovec(iov_base: buffer.memory + Int(lower - buffer.fileOffset), iov_len: Int(upper - lower))
        }
    }

    private enum DirectOutcome {
        /// Written with direct I/O up to this file offset (the rest, if any, is for the page cache).
        case written(through: UInt64)
        case unsupported, failed
    }

    private func writeDirect(_ run: ArraySlice<Buffer>, from start: UInt64, to end: UInt64) -> DirectOutcome {
        let vectors = pieces(of: run, from: start, to: end)
        while true {
            let count = pwritev(directDescriptor, vectors, Int32(vectors.count), off_t(start))
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL {
                    Glibc.close(directDescriptor)
                    directDescriptor = -1
                    return .unsupported
                }
                fail(SystemError("write", path))
                return .failed
            }
            // A short direct write (rare) leaves the rest to the page cache.
            return .written(through: start + UInt64(count))
        }
    }

    private func writeAll(_ run: ArraySlice<Buffer>, from start: UInt64, to end: UInt64) -> Bool {
        var offset = start
        for piece in pieces(of: run, from: start, to: end) {
            var done = 0
            while done < piece.iov_len {
                let count = pwrite(descriptor, piece.iov_base! + done, piece.iov_len - done, off_t(offset) + off_t(done))
                if count < 0 {
                    if errno == EINTR { continue }
                    fail(SystemError("write", path))
                    return false
                }
                done += count
            }
            offset += UInt64(piece.iov_len)
        }
        return true
    }

    private func fail(_ error: SystemError) {
        let failure =
            error.isNoSpace
            ? HTTPError.insufficientStorage()
            : HTTPError(500, code: "io_error", "The server could not store the upload: \(error).")
        shared.withLock { state in
            if state.failure == nil { state.failure = failure }
        }
    }

    /// One staging buffer: page-aligned memory standing for the file from `fileOffset` (4 KiB-aligned),
    /// with the bytes `start..<end` filled.
    final class Buffer: @unchecked Sendable {
        let memory: UnsafeMutableRawPointer
        let budgeted: Bool
        var fileOffset: UInt64 = 0
        var start = 0
        var end = 0
        /// Stages (write, hash) still using the buffer.
        let pending = Atomic<Int>(0)

        /// Maps fresh memory (returned to the system on release, unlike a malloc heap).
        init?(at position: UInt64, budgeted: Bool) {
            let memory = mmap(nil, StagedWriter.bufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let memory, memory != MAP_FAILED else { return nil }
            self.memory = memory
            self.budgeted = budgeted
            reset(at: position)
        }

        /// Whether this buffer continues `previous` in the file with no gap, both aligned where they meet.
        func follows(_ previous: Buffer) -> Bool {
            previous.end == StagedWriter.bufferSize && start == 0
                && fileOffset == previous.fileOffset + UInt64(StagedWriter.bufferSize)
        }

        func reset(at position: UInt64) {
            let alignment = UInt64(StagedWriter.alignment)
            fileOffset = position / alignment * alignment
            start = Int(position - fileOffset)
            end = start
        }

        func deallocate() {
            munmap(memory, StagedWriter.bufferSize)
        }
    }
}

/// The staging buffers all writers together may hold beyond one each: a fixed amount of memory however
/// many uploads run at once.
final class StagingBudget: Sendable {
    static let shared = StagingBudget(buffers: 16)
    private let available: Atomic<Int>

    init(buffers: Int) {
        available = Atomic(buffers)
    }

    var canGrant: Bool { available.load(ordering: .relaxed) > 0 }

    func grant() -> Bool {
        var current = available.load(ordering: .relaxed)
        while current > 0 {
            let (exchanged, original) = available.compareExchange(
                expected: current, desired: current - 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func giveBack() {
        available.add(1, ordering: .releasing)
    }
}
