internal import CMicroHTTPD
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// The C callbacks libmicrohttpd calls. Each reaches the `ServerCore` through its `cls` pointer and the
// request's `RequestContext` through `con_cls`.

/// Leaves the URL as sent: paths are decoded by the application, segment by segment, so that an
/// encoded `/` (`%2F`) or NUL (`%00`) can be seen and refused instead of silently changing the path.
let keepEscapesCallback: @convention(c) (
    UnsafeMutableRawPointer?, OpaquePointer?, UnsafeMutablePointer<CChar>?
) -> Int = { _, _, text in
    guard let text else { return 0 }
    return strlen(text)
}

let accessHandlerCallback: MHD_AccessHandlerCallback = {
    cls, connection, url, method, _, uploadData, uploadDataSize, contextSlot in
    guard let cls, let connection, let uploadDataSize, let contextSlot else { return .NO }
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()

    guard let existing = contextSlot.pointee else {
        let request = Server.makeRequest(core: core, connection: connection, url: url, method: method)
        let context = core.begin(request)
        contextSlot.pointee = Unmanaged.passRetained(context).toOpaque()
        return core.afterHead(context, connection: connection)
    }
    let context = Unmanaged<RequestContext>.fromOpaque(existing).takeUnretainedValue()

    // A paused body takes nothing until its consumer resumes it: the data stays with libmicrohttpd, which
    // offers it again then. (With a chunked body it can call again at once, before it sees the suspension.)
    if let pause = context.pause {
        guard pause.isOpen else { return .YES }
        context.pause = nil
    }
    if uploadDataSize.pointee > 0 {
        let block = UnsafeRawBufferPointer(start: uploadData, count: uploadDataSize.pointee)
        uploadDataSize.pointee = 0
        return core.receive(block, context: context, connection: connection)
    }
    return core.bodyComplete(context, connection: connection)
}

let requestCompletedCallback: @convention(c) (
    UnsafeMutableRawPointer?, OpaquePointer?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    MHD_RequestTerminationCode
) -> Void = { cls, _, contextSlot, termination in
    guard let cls, let contextSlot, let pointer = contextSlot.pointee else { return }
    contextSlot.pointee = nil
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()
    let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeRetainedValue()
    core.complete(context, termination: termination)
}

/// The library's own diagnostics (a client that hung up mid-request, a refused connection), as log lines.
let engineLogCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?) -> Void = { cls, line in
    guard let cls, let line else { return }
    let core = Unmanaged<ServerCore>.fromOpaque(cls).takeUnretainedValue()
    var message = String(cString: line)
    while message.last == "\n" || message.last == "." { message.removeLast() }
    core.logger.log(.info, "engine", ["message": .string(message)])
}

/// True for the first `claim` only, from any thread.
private final class OnceFlag: Sendable {
    private let claimed = Atomic<Bool>(false)
    func claim() -> Bool { !claimed.exchange(true, ordering: .acquiringAndReleasing) }
}

/// Holds a response body's source while libmicrohttpd streams it.
private final class SourceBox {
    let source: any ByteSource
    init(_ source: any ByteSource) { self.source = source }
}

private let sourceReadCallback: MHD_ContentReaderCallback = { cls, position, buffer, maximum in
    guard let cls, let buffer else { return -2 }
    let box = Unmanaged<SourceBox>.fromOpaque(cls).takeUnretainedValue()
    let count = box.source.read(at: position, into: UnsafeMutableRawBufferPointer(start: buffer, count: maximum))
    return count > 0 ? count : -2
}

private let sourceFreeCallback: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    Unmanaged<SourceBox>.fromOpaque(cls).release()
}

extension Server {
    static func makeRequest(
        core: ServerCore, connection: OpaquePointer, url: UnsafePointer<CChar>?, method: UnsafePointer<CChar>?
    ) -> Request {
        var collected = CollectedValues()
        withUnsafeMutablePointer(to: &collected) { pointer in
            _ = MHD_get_connection_values(connection, .HEADER_KIND, collectValueCallback, pointer)
            pointer.pointee.collectingQuery = true
            _ = MHD_get_connection_values(connection, .GET_ARGUMENT_KIND, collectValueCallback, pointer)
        }
        return Request(
            id: core.nextRequestID(),
            method: method.map { String(cString: $0) } ?? "",
            path: url.map { String(cString: $0) } ?? "/",
            query: collected.query,
            headers: HTTPHeaders(collected.headers),
            clientAddress: clientAddress(of: connection),
            connection: ConnectionControl(socket: CMicroHTTPD_socket(connection)))
    }

    private static func clientAddress(of connection: OpaquePointer) -> String {
        guard let address = CMicroHTTPD_client_address(connection) else { return "-" }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                var raw = v4.pointee.sin_addr
                _ = inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
            }
        case AF_INET6:
            address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                var raw = v6.pointee.sin6_addr
                _ = inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
            }
        default: return "-"
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

private struct CollectedValues {
    var headers: [(name: String, value: String)] = []
    var query: [String: String] = [:]
    var collectingQuery = false
}

private let collectValueCallback: MHD_KeyValueIterator = { cls, _, key, value in
    guard let cls, let key else { return .YES }
    let collected = cls.assumingMemoryBound(to: CollectedValues.self)
    let name = String(cString: key)
    let text = value.map { String(cString: $0) } ?? ""
    if collected.pointee.collectingQuery {
        // The unescape callback left arguments as sent; decode them here, as form values.
        let decodedName = PercentDecoding.decode(Substring(name), plusAsSpace: true) ?? name
        if collected.pointee.query[decodedName] == nil {
            collected.pointee.query[decodedName] = PercentDecoding.decode(Substring(text), plusAsSpace: true) ?? text
        }
    } else {
        collected.pointee.headers.append((name, text))
    }
    return .YES
}

extension ServerCore {
    /// The head has arrived: ask the responder what to do.
    func begin(_ request: Request) -> RequestContext {
        if let error = oversizeHead(request) {
            return RequestContext(request: request, state: .ready(Response(error: error)), logsProgress: false)
        }
        if request.hasConflictingLengths {
            let error = HTTPError.badRequest(
                "bad_content_length", "The request has more than one Content-Length header; send exactly one.")
            return RequestContext(request: request, state: .ready(Response(error: error)), logsProgress: false)
        }
        let declared = request.contentLength
        let logsProgress = request.hasBody && (declared ?? .max) >= 1 << 20
        if let limit = configuration.maximumRequestBody, let declared, declared > limit {
            let error = HTTPError(
                413, code: "request_too_large",
                "This request body is \(declared) bytes; the server accepts at most \(limit) bytes in one "
                    + "request. Send the file in chunks (the tus API at /api/uploads/) or ask the operator to "
                    + "raise --max-request-body.",
                details: [("limit", .uint(limit))])
            return RequestContext(request: request, state: .ready(Response(error: error)), logsProgress: false)
        }
        let state: RequestContext.State
        switch responder.reply(to: request) {
        case .respond(let response): state = .ready(response)
        case .consume(let consumer): state = .receiving(consumer)
        case .work(let job): state = .deferred(job)
        case .later(let start): state = .awaiting(start)
        }
        let context = RequestContext(request: request, state: state, logsProgress: logsProgress)
        if logsProgress, case .receiving = state {
            logger.info(
                "upload_start",
                [
                    "id": .string(request.id), "method": .string(request.method), "path": .string(request.path),
                    "declared_bytes": declared.map { .uint($0) } ?? "unknown", "client": .string(request.clientAddress),
                ])
        }
        return context
    }

    /// 414 or 431 for a request head over the configured limits, which sit below libmicrohttpd's own
    /// (its pool), so that the client gets a JSON error rather than the library's HTML.
    private func oversizeHead(_ request: Request) -> HTTPError? {
        let target = request.path.utf8.count + request.query.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 2 }
        if target > configuration.maximumTargetLength {
            return HTTPError(
                414, code: "uri_too_long",
                "The request's URL is over \(configuration.maximumTargetLength) bytes. Use shorter names or paths.",
                details: [("limit", .uint(UInt64(configuration.maximumTargetLength)))])
        }
        let headerBytes = request.headers.fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        if headerBytes > configuration.maximumHeaderBytes {
            return HTTPError(
                431, code: "headers_too_large",
                "The request's headers are over \(configuration.maximumHeaderBytes) bytes. Send fewer or shorter "
                    + "headers (large cookies are the usual cause).",
                details: [("limit", .uint(UInt64(configuration.maximumHeaderBytes)))])
        }
        return nil
    }

    /// Called right after `begin`. A response for a request with a body goes out now when the client has
    /// not sent the body yet (`Expect: 100-continue`), when the body is too big to read for nothing, or
    /// when its length is ambiguous; otherwise the body is drained first, so the client reads a clean answer.
    func afterHead(_ context: RequestContext, connection: OpaquePointer) -> MHD_Result {
        guard case .ready(let response) = context.state, context.request.hasBody else { return .YES }
        let declared = context.request.contentLength ?? 0
        if context.request.expectsContinue || declared > ServerCore.discardLimit
            || context.request.hasConflictingLengths
        {
            return queue(response, context: context, connection: connection)
        }
        context.state = .discarding(response)
        return .YES
    }

    /// How much of a refused body is read and dropped so the client gets a clean answer; past this the
    /// answer goes out at once and the connection closes (a client without `Expect: 100-continue` that
    /// sends gigabytes may then see a broken pipe rather than wait for them all to be read).
    static let discardLimit: UInt64 = 4 << 20
    /// The same for a body refused part-way (a full disk): its client has sent much of it already.
    static let midStreamDiscardLimit: UInt64 = 1 << 30

    func receive(_ block: UnsafeRawBufferPointer, context: RequestContext, connection: OpaquePointer) -> MHD_Result {
        context.bytesIn += UInt64(block.count)
        if stopping.load(ordering: .sequentiallyConsistent), case .receiving(let consumer) = context.state {
            // The server is stopping: a body still arriving is cut now (its consumer keeps or removes what
            // it has), and the answer goes out at once.
            consumer.abort(reason: .serverShutdown)
            context.state = .discarding(Response(error: ServerCore.shuttingDown))
            context.discardLimit = 0
        }
        if let limit = configuration.maximumRequestBody, context.bytesIn > limit, case .receiving(let consumer) = context.state {
            // Only a chunked body can get here: a declared length over the limit never reaches the body.
            let error = HTTPError(
                413, code: "request_too_large",
                "This request body passed the server's limit of \(limit) bytes. Send the file in chunks (the tus "
                    + "API at /api/uploads/) or ask the operator to raise --max-request-body.")
            consumer.abort(reason: .rejected(error))
            context.state = .discarding(Response(error: error))
        }
        if case .discarding(let response) = context.state {
            context.bytesDiscarded += UInt64(block.count)
            if context.bytesDiscarded > context.discardLimit {
                return queue(response, context: context, connection: connection)
            }
            return .YES
        }
        switch context.state {
        case .receiving(let consumer):
            do {
                try consumer.consume(block)
                pauseIfAsked(consumer, context: context, connection: connection)
            } catch {
                consumer.abort(reason: .rejected(error))
                context.state = .discarding(response(for: error, request: context.request))
                // Most of the body has usually arrived by now: read the rest, so the client reads the answer.
                context.discardLimit = ServerCore.midStreamDiscardLimit
            }
        default:
            break
        }
        if context.logsProgress { logProgress(context) }
        return .YES
    }

    /// Stops reading the connection while its consumer cannot take more (its disk writes are behind).
    private func pauseIfAsked(_ consumer: any BodyConsumer, context: RequestContext, connection: OpaquePointer) {
        let gate = PauseGate(SuspendedConnection(pointer: connection), core: self)
        guard consumer.pauses(until: gate.open) else { return }
        context.pause = gate
        pausedBodies.withLock { $0[ObjectIdentifier(gate)] = gate }
        // A stop that began meanwhile has already resumed the paused bodies it saw: not this one.
        if stopping.load(ordering: .sequentiallyConsistent) { gate.open() }
        MHD_suspend_connection(connection)
        gate.suspended()
    }

    /// At a stop: every paused body is resumed, to be cut (`receive` refuses more once stopping), so
    /// that no connection is left suspended when the daemon stops.
    func resumePausedBodies() {
        for gate in pausedBodies.withLock({ Array($0.values) }) { gate.open() }
    }

    /// The body is over (or there was none): queue the answer, or hand blocking work to a worker.
    func bodyComplete(_ context: RequestContext, connection: OpaquePointer) -> MHD_Result {
        switch context.state {
        case .ready(let response), .discarding(let response):
            return queue(response, context: context, connection: connection)
        case .receiving(let consumer):
            if stopping.load(ordering: .sequentiallyConsistent) {
                consumer.abort(reason: .serverShutdown)
                return queue(Response(error: ServerCore.shuttingDown), context: context, connection: connection)
            }
            return runOnWorker(context, connection: connection) { consumer.finish() }
        case .deferred(let job):
            if stopping.load(ordering: .sequentiallyConsistent) {
                return queue(Response(error: ServerCore.shuttingDown), context: context, connection: connection)
            }
            return runOnWorker(context, connection: connection, job)
        case .awaiting(let start):
            if stopping.load(ordering: .sequentiallyConsistent) {
                return queue(Response(error: ServerCore.shuttingDown), context: context, connection: connection)
            }
            return awaitResponse(context, connection: connection, start)
        case .working, .queued:
            return .YES
        }
    }

    private static let shuttingDown = HTTPError(
        503, code: "shutting_down", "The server is restarting; retry in a few seconds.")

    private func runOnWorker(
        _ context: RequestContext, connection: OpaquePointer, _ job: @escaping @Sendable () -> Response
    ) -> MHD_Result {
        context.state = .working
        MHD_suspend_connection(connection)
        let suspended = SuspendedConnection(pointer: connection)
        pendingWork.enter()
        workers.async {
            context.state = .ready(job())
            MHD_resume_connection(suspended.pointer)
            self.pendingWork.leave()
        }
        return .YES
    }

    private func awaitResponse(
        _ context: RequestContext, connection: OpaquePointer,
        _ start: @Sendable (_ respond: @escaping @Sendable (Response) -> Void) -> Void
    ) -> MHD_Result {
        context.state = .working
        MHD_suspend_connection(connection)
        let suspended = SuspendedConnection(pointer: connection)
        pendingWork.enter()
        let answered = OnceFlag()
        start { response in
            guard answered.claim() else { return }
            context.state = .ready(response)
            MHD_resume_connection(suspended.pointer)
            self.pendingWork.leave()
        }
        return .YES
    }

    private func response(for error: any Error, request: Request) -> Response {
        if let error = error as? HTTPError { return Response(error: error) }
        logger.error("internal_error", ["id": .string(request.id), "error": .string("\(error)")])
        return Response(error: .internalError(requestID: request.id))
    }

    private func logProgress(_ context: RequestContext) {
        let now = RequestContext.now()
        let interval = RequestContext.seconds(from: context.lastProgress, to: now)
        guard interval >= configuration.progressInterval else { return }
        let rate = Double(context.bytesIn - context.bytesAtLastProgress) / interval / 1_048_576
        context.lastProgress = now
        context.bytesAtLastProgress = context.bytesIn
        logger.info(
            "upload_progress",
            [
                "id": .string(context.request.id), "path": .string(context.request.path),
                "bytes": .uint(context.bytesIn), "declared_bytes": context.request.contentLength.map { .uint($0) } ?? "unknown",
                "rate_mib_s": .double(rate),
            ])
    }

    func queue(_ response: Response, context: RequestContext, connection: OpaquePointer) -> MHD_Result {
        context.state = .queued
        context.status = response.status
        context.bytesOut = response.body.length
        let made: OpaquePointer?
        switch response.body {
        case .empty:
            made = MHD_create_response_from_buffer(0, nil, .RESPMEM_PERSISTENT)
        case .bytes(let bytes):
            made = bytes.withUnsafeBytes { raw in
                MHD_create_response_from_buffer(
                    raw.count, UnsafeMutableRawPointer(mutating: raw.baseAddress), .RESPMEM_MUST_COPY)
            }
        case .stream(let length, let source):
            let box = Unmanaged.passRetained(SourceBox(source)).toOpaque()
            made = MHD_create_response_from_callback(
                length, configuration.responseBlockSize, sourceReadCallback, box, sourceFreeCallback)
            if made == nil { Unmanaged<SourceBox>.fromOpaque(box).release() }
        }
        guard let made else { return .NO }
        defer { MHD_destroy_response(made) }
        for (name, value) in response.headers {
            if MHD_add_response_header(made, name, value) != .YES {
                logger.error("bad_response_header", ["id": .string(context.request.id), "name": .string(name)])
            }
        }
        _ = MHD_add_response_header(made, "X-Request-ID", context.request.id)
        return MHD_queue_response(connection, UInt32(response.status), made)
    }

    /// The request is over, answered or not. Aborts an unfinished body and writes the request log line.
    func complete(_ context: RequestContext, termination: MHD_RequestTerminationCode) {
        context.request.connection.invalidate()
        let outcome: String
        switch termination {
        case .REQUEST_TERMINATED_COMPLETED_OK: outcome = "ok"
        case .REQUEST_TERMINATED_TIMEOUT_REACHED: outcome = "timed_out"
        case .REQUEST_TERMINATED_DAEMON_SHUTDOWN: outcome = "server_shutdown"
        case .REQUEST_TERMINATED_CLIENT_ABORT, .REQUEST_TERMINATED_READ_ERROR: outcome = "client_aborted"
        default: outcome = "error"
        }
        if case .receiving(let consumer) = context.state {
            let reason: AbortReason
            switch termination {
            case .REQUEST_TERMINATED_TIMEOUT_REACHED: reason = .timedOut
            case .REQUEST_TERMINATED_DAEMON_SHUTDOWN: reason = .serverShutdown
            default: reason = .connectionClosed
            }
            consumer.abort(reason: reason)
            logger.warning(
                "upload_aborted",
                [
                    "id": .string(context.request.id), "path": .string(context.request.path),
                    "bytes_received": .uint(context.bytesIn),
                    "declared_bytes": context.request.contentLength.map { .uint($0) } ?? "unknown",
                    "reason": .string(reason.description),
                ])
        }
        let duration = RequestContext.seconds(from: context.started, to: RequestContext.now())
        let request = context.request
        var fields: KeyValuePairs<String, LogValue> = [:]
        fields = [
            "id": .string(request.id), "method": .string(request.method), "path": .string(request.path),
            "status": .of(context.status), "bytes_in": .uint(context.bytesIn), "bytes_out": .uint(context.bytesOut),
            "duration_ms": .double(duration * 1000), "client": .string(request.clientAddress),
            "outcome": .string(outcome),
        ]
        if context.logsProgress && duration > 0 && outcome == "ok" {
            logger.info(
                "upload_end",
                [
                    "id": .string(request.id), "path": .string(request.path), "status": .of(context.status),
                    "bytes": .uint(context.bytesIn),
                    "rate_mib_s": .double(Double(context.bytesIn) / duration / 1_048_576),
                ])
        }
        logger.info("request", fields)
    }
}

/// Resumes a paused connection exactly once, after it is suspended: the consumer may call `open` before
/// the event thread has suspended the connection (its writes caught up at once), or after.
final class PauseGate: Sendable {
    private enum Step: Int { case asked, suspended, opened }
    private let step = Atomic<Int>(Step.asked.rawValue)
    private let connection: SuspendedConnection
    private unowned let core: ServerCore

    fileprivate init(_ connection: SuspendedConnection, core: ServerCore) {
        self.connection = connection
        self.core = core
    }

    /// Whether the consumer has said it can take more.
    var isOpen: Bool { step.load(ordering: .acquiring) == Step.opened.rawValue }

    /// The consumer can take more.
    @Sendable func open() {
        if step.exchange(Step.opened.rawValue, ordering: .acquiringAndReleasing) == Step.suspended.rawValue {
            resume()
        }
    }

    /// The event thread has suspended the connection.
    func suspended() {
        core.pendingWork.enter()
        let (exchanged, _) = step.compareExchange(
            expected: Step.asked.rawValue, desired: Step.suspended.rawValue, ordering: .acquiringAndReleasing)
        if !exchanged { resume() }
    }

    private func resume() {
        core.pausedBodies.withLock { $0[ObjectIdentifier(self)] = nil }
        MHD_resume_connection(connection.pointer)
        core.pendingWork.leave()
    }
}

/// A suspended connection handed to a worker. Safe to send: only `MHD_resume_connection`, which the
/// library allows from any thread, is called on it there.
private struct SuspendedConnection: @unchecked Sendable {
    let pointer: OpaquePointer
}
