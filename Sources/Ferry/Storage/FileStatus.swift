#if canImport(Glibc)
import Glibc
#endif

/// What `stat` says of a file, in the units Ferry uses.
public struct FileStatus: Sendable {
    public let size: UInt64
    public let isDirectory: Bool
    public let isRegularFile: Bool
    public let inode: UInt64
    /// Modification time: whole seconds and nanoseconds since the epoch.
    public let modifiedSeconds: Int64
    public let modifiedNanoseconds: Int64

    init(_ info: stat) {
        size = UInt64(info.st_size)
        isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
        isRegularFile = (info.st_mode & S_IFMT) == S_IFREG
        inode = UInt64(info.st_ino)
        modifiedSeconds = Int64(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int64(info.st_mtim.tv_nsec)
    }

    /// A strong validator that changes whenever the content is replaced or modified.
    public var entityTag: String {
        "\"" + String(inode, radix: 16) + "-" + String(size, radix: 16) + "-"
            + String(modifiedSeconds, radix: 16) + String(modifiedNanoseconds, radix: 16) + "\""
    }

    /// RFC 3339 UTC, e.g. `2026-12-03T17:02:47Z`.
    public var modifiedISO8601: String { ISO8601.format(modifiedSeconds) }
}

enum ISO8601 {
    static func format(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
