internal import CLinux
import Dispatch
import HTTPServer
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Streams bytes into a file at increasing offsets through a few small page-aligned staging buffers, and
/// computes their SHA-256 on the way: each full buffer is written to disk with direct I/O (`O_DIRECT`)
/// on one worker while another hashes it, and the event-loop thread fills the next.
///
/// Why direct I/O: on these machines a write through the page cache followed by fsync reaches 0.3 to
/// 1.5 GB/s and swings widely, while the same bytes written with `O_DIRECT` in 256 KiB to 1 MiB blocks
/// reach 1.2 to 2.5 GB/s (`dd`, 1 GiB). It also keeps uploads from filling a small server's memory with
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
/// thread); `drain` and `close` from a worker once appending is over. The writes and the hashing run on
/// private serial queues. `@unchecked Sendable` for those hand-overs.
final class StagedWriter: @unchecked Sendable {
    /// 256 KiB: direct writes of this size reach about 1.3 GB/s here (64 KiB: 0.6, 1 MiB: 2.0), and 16
    /// uploads at once then stay within a few MiB of staging memory.
    static let bufferSize = 256 * 1024
    /// Buffers every writer may have without asking the shared budget: one filling, one being written.
    static let guaranteedBuffers = 2
    /// At most this many per writer, the ones beyond `guaranteedBuffers` from the shared budget.
    static let buffersPerWriter = 4
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
    /// The file offset of the next byte appended.
    private(set) var position: UInt64
    private var sealed = false
    /// The file offset up to which every byte is written, in order (advanced by the writes).
    private let written: Atomic<UInt64>

    private struct Shared {
        var free: [Buffer] = []
        /// Buffers this writer has allocated (free, filling or in flight).
        var owned = 0
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
        if let current { release(current) }
        for buffer in shared.withLock({ $0.free }) { release(buffer) }
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
                submit(buffer)
            }
        }
    }

    /// Flow control for the body feeding this writer: false if the next block can be taken at once;
    /// otherwise true, and `resume` is called (once, from a worker thread) as soon as it can.
    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool {
        return shared.withLock { state in
            // With fewer than the guaranteed buffers, a new one is always granted; otherwise, with none free,
            // at least one is being written (at most one is filling), and its end calls `resume`.
            if state.owned < StagedWriter.guaranteedBuffers || !state.free.isEmpty || state.failure != nil
                || state.owned < StagedWriter.buffersPerWriter && StagingBudget.shared.canGrant
            {
                return false
            }
            state.resume = resume
            return true
        }
    }

    /// No more bytes will be appended: hands the last, partly filled buffer to the disk, and lets each
    /// buffer go as soon as its work is done. Does not wait.
    func seal() {
        guard !sealed else { return }
        if let buffer = current, buffer.end > buffer.start {
            current = nil
            submit(buffer)
        }
        stopAppending()
    }

    private func stopAppending() {
        sealed = true
        if let buffer = current {
            current = nil
            release(buffer)
        }
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

    /// Seals and waits for what is in flight. Blocking; idempotent.
    func close() {
        seal()
        inFlight.wait()
    }

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
                // Only when the body did not pause as asked (a new multipart part, say): wait for a write.
                inFlight.wait()
            }
        }
    }

    private func submit(_ buffer: Buffer) {
        inFlight.enter()
        buffer.pending.store(2, ordering: .relaxed)
        writes.async {
            self.write(buffer)
            self.done(with: buffer)
        }
        hashing.async {
            TestHooks.beforeHashing()
            self.digest.update(UnsafeRawBufferPointer(start: buffer.memory + buffer.start, count: buffer.end - buffer.start))
            self.done(with: buffer)
        }
    }

    private func done(with buffer: Buffer) {
        guard buffer.pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
        let (closed, resume) = shared.withLock { state in
            if !state.closed { state.free.append(buffer) }
            defer { state.resume = nil }
            return (state.closed, state.resume)
        }
        if closed { release(buffer) }
        inFlight.leave()
        resume?()
    }

    private func release(_ buffer: Buffer) {
        if buffer.budgeted { StagingBudget.shared.giveBack() }
        buffer.deallocate()
    }

    /// On `writes`: puts the buffer's bytes at their place in the file, the aligned middle with direct I/O.
    private func write(_ buffer: Buffer) {
        guard shared.withLock({ $0.failure == nil }) else { return }
        let alignment = StagedWriter.alignment
        var start = buffer.start
        let end = buffer.end
        if directDescriptor >= 0 {
            let alignedStart = min(end, (start + alignment - 1) / alignment * alignment)
            let alignedEnd = end / alignment * alignment
            if alignedEnd > alignedStart {
                if !writeAll(buffer, from: start, to: alignedStart, descriptor: descriptor) { return }
                start = alignedStart
                switch writeDirect(buffer, from: alignedStart, to: alignedEnd) {
                case .written: start = alignedEnd
                case .unsupported: break  // the rest of this buffer, and every later one, through the page cache
                case .failed: return
                }
            }
        }
        if !writeAll(buffer, from: start, to: end, descriptor: descriptor) { return }
        written.store(buffer.fileOffset + UInt64(end), ordering: .releasing)
        if directDescriptor < 0 {
            // Start writeback now, so the disk works while the network delivers, and dirty memory stays low.
            sync_file_range(
                descriptor, Int64(buffer.fileOffset) + Int64(buffer.start), Int64(end - buffer.start),
                UInt32(CLINUX_SYNC_FILE_RANGE_WRITE))
        }
    }

    private enum DirectOutcome { case written, unsupported, failed }

    private func writeDirect(_ buffer: Buffer, from start: Int, to end: Int) -> DirectOutcome {
        var offset = start
        while offset < end {
            let count = pwrite(directDescriptor, buffer.memory + offset, end - offset, off_t(buffer.fileOffset) + off_t(offset))
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && offset == start {
                    Glibc.close(directDescriptor)
                    directDescriptor = -1
                    return .unsupported
                }
                fail(SystemError("write", path))
                return .failed
            }
            offset += count
            // A short direct write leaves an unaligned rest: finish it through the page cache.
            if offset % StagedWriter.alignment != 0 {
                return writeAll(buffer, from: offset, to: end, descriptor: descriptor) ? .written : .failed
            }
        }
        return .written
    }

    private func writeAll(_ buffer: Buffer, from start: Int, to end: Int, descriptor: Int32) -> Bool {
        var offset = start
        while offset < end {
            let count = pwrite(descriptor, buffer.memory + offset, end - offset, off_t(buffer.fileOffset) + off_t(offset))
            if count < 0 {
                if errno == EINTR { continue }
                fail(SystemError("write", path))
                return false
            }
            offset += count
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
    static let shared = StagingBudget(buffers: 8)
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
