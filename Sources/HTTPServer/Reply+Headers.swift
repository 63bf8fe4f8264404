extension Reply {
    /// The same reply with `headers` added to whatever response it makes.
    public func withHeaders(_ headers: [(String, String)]) -> Reply {
        guard !headers.isEmpty else { return self }
        @Sendable func add(_ response: Response) -> Response {
            var response = response
            for (name, value) in headers { response.headers.add(name, value) }
            return response
        }
        switch self {
        case .respond(let response): return .respond(add(response))
        case .work(let job): return .work { add(job()) }
        case .later(let start): return .later { respond in start { respond(add($0)) } }
        case .consume(let consumer): return .consume(HeaderAddingConsumer(consumer, add: add))
        }
    }
}

/// Wraps a consumer to add headers to the response it makes.
private final class HeaderAddingConsumer: BodyConsumer {
    let inner: any BodyConsumer
    let add: @Sendable (Response) -> Response

    init(_ inner: any BodyConsumer, add: @escaping @Sendable (Response) -> Response) {
        self.inner = inner
        self.add = add
    }

    func consume(_ block: UnsafeRawBufferPointer) throws { try inner.consume(block) }
    func pauses(until resume: @escaping @Sendable () -> Void) -> Bool { inner.pauses(until: resume) }
    func finish() -> Response { add(inner.finish()) }
    func abort(reason: AbortReason) { inner.abort(reason: reason) }
}

