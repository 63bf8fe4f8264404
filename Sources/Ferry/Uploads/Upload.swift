import Dispatch
import HTTPServer
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The request that holds an upload's writer slot: its connection (to cut it) and when it last
/// delivered bytes, so that only a request that has gone silent is cut for a newcomer.
///
/// Thread-safety: `Sendable`; the time is atomic.
final class ActiveWriter: Sendable {
    let connection: ConnectionControl
    private let lastActivity = Atomic<Int64>(ActiveWriter.milliseconds())
    /// A writer silent this long is taken for dead (its client has gone and the server has not noticed).
    static let stallMilliseconds: Int64 = 3000

    init(connection: ConnectionControl) {
        self.connection = connection
    }

    func touch() {
        lastActivity.store(ActiveWriter.milliseconds(), ordering: .relaxed)
    }

    var isStalled: Bool {
        ActiveWriter.milliseconds() - lastActivity.load(ordering: .relaxed) >= ActiveWriter.stallMilliseconds
    }

    private static func milliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}

/// One tus upload: what it was created with (immutable) and where it stands (behind a lock).
///
/// Thread-safety: `Sendable`; the mutable part lives in a `Mutex`. Changes to `offset` and `hash` are
/// made only after the bytes they count are fsynced and the database row is committed.
final class Upload: Sendable {
    enum Phase: Sendable, Equatable {
        /// Accepting bytes.
        case receiving
        /// A final upload whose partial uploads are being concatenated, in the background.
        case assembling
        /// Finished and stored at this path.
        case complete(RelativePath)
        /// A final upload whose concatenation failed; the message says why.
        case failed(String)
    }

    /// Plain, or a part of the concatenation extension.
    enum Kind: Sendable, Equatable {
        case single
        /// A partial upload: never stored as a file of its own, only concatenated into a final one.
        case partial
        /// A final upload: the concatenation of these partial uploads (IDs, in order), as the
        /// `Upload-Concat` header named them (`header`).
        case final(parts: [String], header: String)

        var isPartial: Bool { self == .partial }
        var parts: [String] {
            if case .final(let parts, _) = self { return parts }
            return []
        }
    }

    struct Progress: Sendable {
        /// The total length; nil while deferred (`Upload-Defer-Length: 1`).
        var length: UInt64?
        /// Bytes durably stored.
        var offset: UInt64
        /// SHA-256 state over those bytes (over a prefix only when recovered from an older version's
        /// records, until recovery hashes the rest).
        var hash: TrailingHasher.Checkpoint
        var phase: Phase
        /// Seconds since the epoch of the last change.
        var updated: Int64
        /// The request writing to this upload now, if any.
        var writer: ActiveWriter?
    }

    let id: String
    let kind: Kind
    /// `Upload-Metadata` exactly as the client sent it (echoed by `HEAD`).
    let metadataHeader: String
    /// Where the file goes when complete.
    let target: RelativePath
    /// The SHA-256 the client announced for the whole file, lowercase hex.
    let expectedSHA256: String?
    let policy: CollisionPolicy
    let created: Int64
    let progress: Mutex<Progress>

    init(
        id: String, kind: Kind, metadataHeader: String, target: RelativePath, expectedSHA256: String?,
        policy: CollisionPolicy, created: Int64, progress: Progress
    ) {
        self.id = id
        self.kind = kind
        self.metadataHeader = metadataHeader
        self.target = target
        self.expectedSHA256 = expectedSHA256
        self.policy = policy
        self.created = created
        self.progress = Mutex(progress)
    }

    var snapshot: Progress { progress.withLock { $0 } }

    /// Calls `then(true)` once no request is writing to this upload, or `then(false)` after `seconds`;
    /// a writer silent for `ActiveWriter.stallMilliseconds` is cut on the way (keeping its bytes). Checks
    /// every 100 ms on a timer: holds no thread while it waits. `then` runs on a Dispatch thread.
    func whenWriterGone(within seconds: Int, then: @escaping @Sendable (Bool) -> Void) {
        check(remaining: seconds * 10, then: then)
    }

    private func check(remaining: Int, then: @escaping @Sendable (Bool) -> Void) {
        guard let writer = snapshot.writer else { return then(true) }
        if writer.isStalled { writer.connection.cut() }
        guard remaining > 0 else { return then(false) }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(100)) {
            self.check(remaining: remaining - 1, then: then)
        }
    }

    /// Whether all of its bytes have arrived (for a partial upload: ready to be concatenated).
    var isFilled: Bool {
        let progress = snapshot
        return progress.length.map { progress.offset == $0 } ?? false
    }

    /// IDs are 32 lowercase hex digits; anything else (a path, say) is not an upload.
    static func isValidID(_ text: Substring) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
