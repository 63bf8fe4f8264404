import HTTPServer

/// A small request body (JSON) collected in memory under a hard cap; past the cap the request is
/// refused with 413. The only kind of body Ferry ever collects.
final class CollectedBody: BodyConsumer, @unchecked Sendable {
    // Sendable: consume runs on the event thread, finish on a worker afterwards, never at once.
    private var bytes: [UInt8] = []
    private let limit: Int
    /// The answer to a body over `limit`.
    private let refusal: HTTPError
    private let handler: @Sendable ([UInt8]) -> Response

    init(limit: Int = 64 * 1024, refusal: HTTPError? = nil, handler: @escaping @Sendable ([UInt8]) -> Response) {
        self.limit = limit
        self.refusal =
            refusal ?? HTTPError(413, code: "body_too_large", "This request's body may be at most \(limit) bytes.")
        self.handler = handler
    }

    func consume(_ block: UnsafeRawBufferPointer) throws {
        guard bytes.count + block.count <= limit else { throw refusal }
        bytes.append(contentsOf: block)
    }

    func finish() -> Response { handler(bytes) }

    func abort(reason: AbortReason) { bytes = [] }
}
