import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Lets another thread cut a request's connection: the socket is shut down, the engine sees the
/// connection end, and the request's `BodyConsumer` gets `abort(reason: .connectionClosed)`, keeping
/// whatever it had. Used when a client resumes an upload while its old request still looks alive.
///
/// Thread-safety: safe from any thread. Invalidated when the request completes, so a socket number
/// the kernel has since given to another connection is never touched.
public final class ConnectionControl: Sendable {
    private let socket = Mutex<Int32>(-1)

    init(socket descriptor: Int32) {
        socket.withLock { $0 = descriptor }
    }

    /// A control that cuts nothing (for requests built in tests).
    public static func detached() -> ConnectionControl { ConnectionControl(socket: -1) }

    /// Shuts the connection down in both directions; does nothing once the request has completed.
    public func cut() {
        socket.withLock { descriptor in
            if descriptor >= 0 { shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    func invalidate() {
        socket.withLock { $0 = -1 }
    }
}
