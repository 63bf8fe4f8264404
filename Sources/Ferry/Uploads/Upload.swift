import HTTPServer
import Synchronization

/// One tus upload: what it was created with (immutable) and where it stands (behind a lock).
///
/// Thread-safety: `Sendable`; the mutable part lives in a `Mutex`. Changes to `offset` and `hashState`
/// are made only after the bytes they count are fsynced and the database row is committed.
final class Upload: Sendable {
    enum Phase: Sendable, Equatable {
        /// Accepting bytes.
        case receiving
        /// Finished and stored at this path.
        case complete(RelativePath)
    }

    struct Progress: Sendable {
        /// The total length; nil while deferred (`Upload-Defer-Length: 1`).
        var length: UInt64?
        /// Bytes durably stored.
        var offset: UInt64
        /// SHA-256 state over the first `offset` bytes.
        var hashState: [UInt8]
        var phase: Phase
        /// Seconds since the epoch of the last change.
        var updated: Int64
        /// The request writing to this upload now, if any.
        var writer: ConnectionControl?
    }

    let id: String
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
        id: String, metadataHeader: String, target: RelativePath, expectedSHA256: String?, policy: CollisionPolicy,
        created: Int64, progress: Progress
    ) {
        self.id = id
        self.metadataHeader = metadataHeader
        self.target = target
        self.expectedSHA256 = expectedSHA256
        self.policy = policy
        self.created = created
        self.progress = Mutex(progress)
    }

    var snapshot: Progress { progress.withLock { $0 } }

    /// IDs are 32 lowercase hex digits; anything else (a path, say) is not an upload.
    static func isValidID(_ text: Substring) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
