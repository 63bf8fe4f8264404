internal import CMicroHTTPD
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 server on GNU libmicrohttpd: a pool of epoll event-loop threads that stream request
/// bodies to a `Responder` block by block, plus a small worker pool for blocking work (libmicrohttpd's
/// suspend/resume carries a connection across).
///
/// Thread-safety: `start` and `stop` are called from one thread (the program's main); everything else
/// happens on the engine's threads.
public final class Server: Sendable {
    /// Why the server could not start.
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    private let core: ServerCore
    private let daemon = Mutex<DaemonHandle?>(nil)

    public init(configuration: ServerConfiguration, responder: any Responder, logger: Logger) {
        core = ServerCore(configuration: configuration, responder: responder, logger: logger)
    }

    /// The port the server listens on; the real one when port 0 was configured.
    public var port: UInt16 {
        daemon.withLock { $0.map { CMicroHTTPD_bound_port($0.pointer) } ?? 0 }
    }

    /// Binds and starts the event loops. Throws when the address cannot be bound.
    public func start() throws(StartError) {
        let configuration = core.configuration
        var storage = sockaddr_storage()
        var flags = UInt32(MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_EPOLL.rawValue)
        flags |= UInt32(MHD_ALLOW_SUSPEND_RESUME.rawValue) | UInt32(MHD_USE_ERROR_LOG.rawValue)
        let family = try Server.fill(&storage, host: configuration.host, port: configuration.port)
        if family == AF_INET6 { flags |= UInt32(MHD_USE_IPv6.rawValue) }

        let corePointer = Unmanaged.passUnretained(core).toOpaque()
        let started: OpaquePointer? = withUnsafeMutablePointer(to: &storage) { address in
            var options: [MHD_OptionItem] = [
                // First, so that the library's messages about the other options come through it too.
                CMicroHTTPD_option(.EXTERNAL_LOGGER, CMicroHTTPD_log_formatter(), core.logTarget),
                CMicroHTTPD_option(.SOCK_ADDR, 0, UnsafeMutableRawPointer(address)),
                CMicroHTTPD_option(.CONNECTION_MEMORY_LIMIT, configuration.connectionMemoryLimit, nil),
                CMicroHTTPD_option(.CONNECTION_TIMEOUT, Int(configuration.idleTimeout), nil),
                CMicroHTTPD_option(.PER_IP_CONNECTION_LIMIT, Int(configuration.connectionsPerClient), nil),
                CMicroHTTPD_option(.CONNECTION_LIMIT, Int(configuration.maximumConnections), nil),
                CMicroHTTPD_option(
                    .NOTIFY_COMPLETED, unsafeBitCast(requestCompletedCallback, to: Int.self), corePointer),
                CMicroHTTPD_option(
                    .UNESCAPE_CALLBACK, unsafeBitCast(keepEscapesCallback, to: Int.self), nil),
            ]
            // A pool of one is refused by the library: one thread is the internal polling thread itself.
            if configuration.threads > 1 {
                options.append(CMicroHTTPD_option(.THREAD_POOL_SIZE, configuration.threads, nil))
            }
            options.append(CMicroHTTPD_option(.END, 0, nil))
            return options.withUnsafeMutableBufferPointer { items in
                CMicroHTTPD_start(flags, accessHandlerCallback, corePointer, items.baseAddress)
            }
        }
        guard let started else {
            throw StartError(
                description: "cannot listen on \(configuration.host):\(configuration.port) "
                    + "(address in use, or not an address of this machine)")
        }
        daemon.withLock { $0 = DaemonHandle(pointer: started) }
    }

    /// Stops gracefully: stops accepting, lets blocking work in progress (fsync, rename) finish and answer,
    /// then closes every connection. Bodies still arriving are aborted (`BodyConsumer.abort`).
    public func stop() {
        guard let handle = daemon.withLock({ current -> DaemonHandle? in
            defer { current = nil }
            return current
        }) else { return }
        core.stopping.store(true, ordering: .sequentiallyConsistent)
        let listener = MHD_quiesce_daemon(handle.pointer)
        if listener >= 0 { close(listener) }
        core.resumePausedBodies()
        core.pendingWork.wait()
        MHD_stop_daemon(handle.pointer)
    }

    private static func fill(_ storage: inout sockaddr_storage, host: String, port: UInt16) throws(StartError) -> Int32 {
        let hostname = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, hostname, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { target in
                withUnsafeBytes(of: v4) { target.copyMemory(from: $0) }
            }
            return AF_INET
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, hostname, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage) { target in
                withUnsafeBytes(of: v6) { target.copyMemory(from: $0) }
            }
            return AF_INET6
        }
        throw StartError(description: "\(host) is not an IPv4 or IPv6 address")
    }
}

/// The libmicrohttpd daemon pointer. Safe to send: the library synchronises its own daemon state.
private struct DaemonHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// What the C callbacks reach through their `cls` pointer. `@unchecked Sendable`: every member is
/// immutable or thread-safe; `logTarget` is written once in `init` and only read by the library after.
final class ServerCore: @unchecked Sendable {
    let configuration: ServerConfiguration
    let responder: any Responder
    let logger: Logger
    let workers: DispatchQueue
    /// Blocking jobs in flight; `stop` waits for them before closing connections.
    let pendingWork = DispatchGroup()
    let stopping = Atomic<Bool>(false)
    /// Bodies paused by their consumers (flow control), by gate.
    let pausedBodies = Mutex<[ObjectIdentifier: PauseGate]>([:])
    private let requestCounter = Atomic<UInt64>(0)
    /// Where the library's log callback sends its formatted lines; lives as long as the server.
    let logTarget: UnsafeMutableRawPointer
    private let idPrefix: String

    init(configuration: ServerConfiguration, responder: any Responder, logger: Logger) {
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
        workers = DispatchQueue(label: "ferry.workers", attributes: .concurrent)
        idPrefix = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 16)
        let target = UnsafeMutablePointer<CMicroHTTPD_log_target>.allocate(capacity: 1)
        logTarget = UnsafeMutableRawPointer(target)
        target.initialize(to: CMicroHTTPD_log_target(function: engineLogCallback, cls: nil))
        target.pointee.cls = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { logTarget.deallocate() }

    /// A request ID: a per-process random prefix and a counter, e.g. `4f3a9c1e-000012`.
    func nextRequestID() -> String {
        let number = requestCounter.add(1, ordering: .relaxed).newValue
        let digits = String(number)
        return idPrefix + "-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }
}
