/// How the HTTP engine listens and what it allows. Defaults suit a small VPS.
public struct ServerConfiguration: Sendable {
    /// The address to bind: an IPv4 or IPv6 literal.
    public var host: String = "127.0.0.1"
    /// The port to bind; 0 lets the kernel choose (read it back from `Server.port`).
    public var port: UInt16 = 8080
    /// Event-loop threads; each runs its own epoll loop.
    public var threads: Int = 2
    /// Worker threads for blocking work (fsync, rename, directory walks).
    public var workers: Int = 4
    /// Per-connection memory (libmicrohttpd's pool). Caps request headers and sets the size of each
    /// body block; 256 KiB measured twice as fast as the 32 KiB default for uploads.
    public var connectionMemoryLimit: Int = 256 * 1024
    /// The longest request target (path and query) answered; longer gets 414 with a JSON error. Keep it
    /// well under `connectionMemoryLimit`: past that, libmicrohttpd refuses the request itself, with its
    /// own HTML body.
    public var maximumTargetLength: Int = 16 * 1024
    /// The most header bytes answered; more gets 431 with a JSON error (the same caveat).
    public var maximumHeaderBytes: Int = 64 * 1024
    /// Block size for streamed response bodies.
    public var responseBlockSize: Int = 256 * 1024
    /// Seconds a connection may stay idle (no bytes in either direction) before it is closed.
    public var idleTimeout: UInt32 = 60
    /// Open connections allowed from one client address, so one client cannot starve the others.
    public var connectionsPerClient: UInt32 = 64
    /// Open connections allowed in all.
    public var maximumConnections: UInt32 = 1024
    /// The largest request body accepted, in bytes; nil for no limit. A larger declared length gets
    /// 413 before any body byte is read; a chunked body is cut at the limit.
    public var maximumRequestBody: UInt64? = nil
    /// Seconds between progress log lines of a body being received.
    public var progressInterval: Double = 5

    public init() {}
}
