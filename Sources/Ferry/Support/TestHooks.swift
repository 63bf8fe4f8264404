#if canImport(Glibc)
import Glibc
#endif

/// Fault injection for the end-to-end tests, read once from the environment. Unset in production, where
/// every hook is a no-op.
enum TestHooks {
    /// `FERRY_TEST_COMMIT_DELAY_MS`: a pause before an upload's fsync, standing in for a slow disk, so a
    /// test can show that other connections are served while an upload is being made durable.
    static let commitDelayMilliseconds: UInt32 = {
        guard let text = getenv("FERRY_TEST_COMMIT_DELAY_MS").map({ String(cString: $0) }) else { return 0 }
        return UInt32(text) ?? 0
    }()

    static func beforeCommit() {
        if commitDelayMilliseconds > 0 { usleep(commitDelayMilliseconds * 1000) }
    }

    /// `FERRY_TEST_HASH_DELAY_MS`: a pause before each staging buffer (or trailing read) is hashed,
    /// standing in for a busy CPU, so a test can show that an offset is never recorded ahead of its digest.
    static let hashDelayMilliseconds: UInt32 = {
        guard let text = getenv("FERRY_TEST_HASH_DELAY_MS").map({ String(cString: $0) }) else { return 0 }
        return UInt32(text) ?? 0
    }()

    static func beforeHashing() {
        if hashDelayMilliseconds > 0 { usleep(hashDelayMilliseconds * 1000) }
    }
}
