internal import CLinux
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Computes the SHA-256 of a file while it is being appended to by someone else (the assembly of a
/// concatenated upload, which copies in the kernel), on a worker thread that reads each newly written
/// range back from the page cache right behind the writer; also, from a saved state, the digest of a
/// file's tail (recovery after a crash, or after a failed write).
///
/// Uploads received over HTTP do not need it: their bytes pass through `StagedWriter`'s buffers, which
/// hash them on the way to the disk.
///
/// Threading: `advance(to:)` is called by the writer (one thread at a time); the hashing runs on a
/// private serial queue; `wake`, `checkpoint` and `finish` may be called from any thread.
final class TrailingHasher: @unchecked Sendable {
    private let path: String
    private let digest: SHA256
    private let queue: DispatchQueue
    /// Bytes the writer has written so far.
    private let written = Atomic<UInt64>(0)
    /// Whether a drain is queued or running.
    private let scheduled = Atomic<Bool>(false)
    /// Where `advance` last woke the hasher; only touched by the writer.
    private var lastScheduled: UInt64 = 0
    private static let batch: UInt64 = 4 << 20
    /// Bytes hashed so far; only touched on `queue`.
    private var hashed: UInt64 = 0
    /// Bytes handed to the kernel for writeback so far; only touched on `queue`.
    private var flushed: UInt64 = 0
    private var failed = false
    /// Writeback is started every this many bytes. Small, so that little is left for the fsync that
    /// ends each request (2 MiB: the fsync closing a 64 MiB PATCH went from 5-8 ms to 2-3 ms here).
    private static let writebackStep: UInt64 = 2 << 20
    private static let blockSize = 64 * 1024
    private static let pool = DispatchQueue(label: "ferry.hashing", attributes: .concurrent)

    /// The digest state over the first `size` bytes of the file.
    struct Checkpoint: Sendable {
        let size: UInt64
        let state: [UInt8]
    }

    /// Hashes the file at `path` (the file being written) as it grows. A resumed upload passes the
    /// digest of its first `offset` bytes, which may be fewer than the file holds: the rest is hashed
    /// as soon as the writer moves on, or `wake`, `checkpoint` or `finish` is called.
    init(path: String, offset: UInt64 = 0, digest: SHA256 = SHA256()) {
        self.path = path
        self.digest = digest
        hashed = offset
        flushed = offset
        lastScheduled = offset
        written.store(offset, ordering: .relaxed)
        queue = DispatchQueue(label: "ferry.hash", target: TrailingHasher.pool)
    }

    /// The writer has written the file up to `size` bytes: hash them soon.
    func advance(to size: UInt64) {
        written.store(size, ordering: .releasing)
        // Wake the hasher once per batch, not once per 128 KiB block: each wake-up is a thread switch
        // on a machine whose cores are busy receiving. The bytes stay in the page cache meanwhile, and
        // `checkpoint` / `finish` hash whatever is left.
        guard size - lastScheduled >= TrailingHasher.batch else { return }
        lastScheduled = size
        wake()
    }

    /// Hash what is written so far now, on the hashing thread: called when writing stops, so that the
    /// last blocks are hashed while the caller fsyncs instead of after.
    func wake() {
        guard !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { self.drain() }
    }

    private func drain() {
        while true {
            hash(upTo: written.load(ordering: .acquiring))
            scheduled.store(false, ordering: .releasing)
            // A write that came in after the last load saw `scheduled` still set and did not queue a
            // drain: take it over here, unless another drain has been queued meanwhile.
            guard written.load(ordering: .acquiring) > hashed, !failed,
                !scheduled.exchange(true, ordering: .acquiringAndReleasing)
            else { return }
        }
    }

    /// On `queue`: hashes up to `target`, starting writeback along the way.
    private func hash(upTo target: UInt64) {
        guard hashed < target, !failed else { return }
        TestHooks.beforeHashing()
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            failed = true
            return
        }
        defer { close(descriptor) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: TrailingHasher.blockSize, alignment: 64)
        defer { buffer.deallocate() }
        while hashed < target {
            let wanted = Int(min(UInt64(TrailingHasher.blockSize), target - hashed))
            let got = pread(descriptor, buffer.baseAddress, wanted, off_t(hashed))
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else {
                failed = true
                return
            }
            digest.update(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            hashed += UInt64(got)
            startWriteback(descriptor)
        }
    }

    /// Asks the kernel to start writing what the writer has written to disk now, ahead of the hashing
    /// and without waiting for it. Otherwise nothing reaches the disk until the final fsync (the kernel
    /// lets gigabytes of dirty pages pile up first), and receiving and writing happen one after the
    /// other instead of side by side. It also keeps dirty memory low on a small machine.
    private func startWriteback(_ descriptor: Int32) {
        let target = written.load(ordering: .acquiring)
        guard target - flushed >= TrailingHasher.writebackStep else { return }
        sync_file_range(descriptor, Int64(flushed), Int64(target - flushed), UInt32(CLINUX_SYNC_FILE_RANGE_WRITE))
        flushed = target
    }

    /// Waits until the first `size` bytes are hashed and returns the running state (to resume later);
    /// nil if the file could not be read back.
    func checkpoint(size: UInt64) -> [UInt8]? {
        queue.sync {
            hash(upTo: size)
            return failed || hashed != size ? nil : digest.state
        }
    }

    /// Waits until the first `size` bytes are hashed and returns the digest in hex; nil if the file
    /// could not be read back. Call once, after the last `advance`.
    func finish(size: UInt64) -> String? {
        queue.sync {
            hash(upTo: size)
            return failed || hashed != size ? nil : digest.finalizeHex()
        }
    }
}
