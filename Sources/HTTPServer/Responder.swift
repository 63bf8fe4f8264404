/// What an application does with requests. Called on an event-loop thread as soon as a request's head
/// has arrived: it must not block (no fsync, no hashing of whole files, no long database work);
/// return `.work` or a `BodyConsumer` for that.
public protocol Responder: Sendable {
    func reply(to request: Request) -> Reply
}

/// How the server proceeds with a request whose head has arrived.
public enum Reply: Sendable {
    /// Answer with this response. If the request has a body, it is read and discarded first, except
    /// when the response is sent before the body (`Expect: 100-continue`, or a `413`).
    case respond(Response)
    /// Stream the body into `consumer`; `BodyConsumer.finish()` then makes the response on a worker thread.
    case consume(any BodyConsumer)
    /// Make the response on a worker thread, where blocking is allowed; for requests without a body.
    case work(@Sendable () -> Response)
    /// Answer when something happens elsewhere, holding no thread meanwhile: the closure is called on
    /// the event-loop thread (it must not block) with a function to call once, from any thread, with
    /// the response. For requests without a body.
    case later(@Sendable (_ respond: @escaping @Sendable (Response) -> Void) -> Void)
}

/// Receives a request body block by block, through a small fixed buffer, and makes the response.
///
/// Threading: `consume` and `abort` are called on the connection's event-loop thread, one call at a
/// time; `finish` is called once, on a worker thread, after the last block. Exactly one of `finish`
/// and `abort` is called.
public protocol BodyConsumer: AnyObject, Sendable {
    /// Takes the next block of the body. Throwing stops writing: the rest of the body is discarded and
    /// the error (an `HTTPError`, or a 500) becomes the response.
    func consume(_ block: UnsafeRawBufferPointer) throws
    /// Flow control, asked after each `consume`: false to take the next block at once; true if the
    /// consumer cannot take one yet (its writes to disk are behind), in which case the engine stops
    /// reading the connection until `resume` is called (once, from any thread). Defaults to false.
    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool
    /// The whole body arrived. May block (fsync, rename).
    func finish() -> Response
    /// The body will not be finished: the connection broke, the server is stopping, or `consume`
    /// threw. Undo whatever was started. Must not block for long.
    func abort(reason: AbortReason)
}

extension BodyConsumer {
    public func pauses(until resume: @escaping @Sendable () -> Void) -> Bool { false }
}

/// Why a body was not finished.
public enum AbortReason: Sendable, CustomStringConvertible {
    case connectionClosed
    case timedOut
    case serverShutdown
    case rejected(Error)

    public var description: String {
        switch self {
        case .connectionClosed: return "connection_closed"
        case .timedOut: return "timed_out"
        case .serverShutdown: return "server_shutdown"
        case .rejected(let error): return "rejected: \(error)"
        }
    }
}
