#if canImport(Glibc)
import Glibc
#endif

/// One request's state between libmicrohttpd's calls.
///
/// Thread-safety: `@unchecked Sendable` because libmicrohttpd calls back for one connection on one
/// thread at a time, and while a worker owns the request the connection is suspended: the engine does
/// not touch it again until the worker has stored its result and resumed it.
final class RequestContext: @unchecked Sendable {
    enum State {
        /// Streaming the body into a consumer.
        case receiving(any BodyConsumer)
        /// Reading and dropping the body; then this response.
        case discarding(Response)
        /// Blocking work to run once the body (if any) is over.
        case deferred(@Sendable () -> Response)
        /// A response to wait for once the body (if any) is over (`Reply.later`).
        case awaiting(@Sendable (_ respond: @escaping @Sendable (Response) -> Void) -> Void)
        /// A worker owns the request; the connection is suspended.
        case working
        /// The response, to queue at the next call.
        case ready(Response)
        /// The response has been handed to the engine.
        case queued
    }

    let request: Request
    let started: timespec
    var state: State
    var bytesIn: UInt64 = 0
    /// Set while the body is paused by its consumer (flow control), until the consumer resumes it.
    var pause: PauseGate?
    /// Bytes of a refused body read and dropped.
    var bytesDiscarded: UInt64 = 0
    /// How much of a refused body is dropped before the answer goes out regardless.
    var discardLimit: UInt64 = ServerCore.discardLimit
    var status = 0
    var bytesOut: UInt64 = 0
    var lastProgress: timespec
    var bytesAtLastProgress: UInt64 = 0
    /// Whether this request's body gets start and progress log lines.
    let logsProgress: Bool

    init(request: Request, state: State, logsProgress: Bool) {
        self.request = request
        self.state = state
        self.logsProgress = logsProgress
        started = RequestContext.now()
        lastProgress = started
    }

    static func now() -> timespec {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return time
    }

    static func seconds(from start: timespec, to end: timespec) -> Double {
        Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    }
}
