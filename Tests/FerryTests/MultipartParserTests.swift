import Testing
@testable import Ferry

@Suite("Multipart parser")
struct MultipartParserTests {}

// MARK: - Helpers

/// A part reassembled from events, comparable across different block splits.
private struct ParsedPart: Equatable, Sendable, CustomStringConvertible {
    var fields: [[String]]
    var name: String?
    var filename: String?
    var contentType: String?
    var data: [UInt8]

    init(fields: [[String]] = [], name: String? = nil, filename: String? = nil,
         contentType: String? = nil, data: [UInt8] = []) {
        self.fields = fields; self.name = name; self.filename = filename
        self.contentType = contentType; self.data = data
    }

    var description: String {
        "Part(name: \(name ?? "nil"), filename: \(filename ?? "nil"), type: \(contentType ?? "nil"), \(data.count) bytes, fields: \(fields))"
    }
}

/// Parses `body` fed as consecutive blocks ending at `cuts` (plus the end), checks
/// event order and the held-back bound, then calls finish().
private func parse(_ body: [UInt8], boundary: String, cuts: [Int] = []) throws -> [ParsedPart] {
    var parser = MultipartParser(boundary: boundary)
    var parts: [ParsedPart] = []
    var open = false
    var start = 0
    for end in cuts + [body.count] {
        let block = Array(body[start..<end])
        try block.withUnsafeBytes { raw in
            try parser.feed(raw) { event in
                switch event {
                case .partBegin(let h):
                    #expect(!open, "partBegin inside a part")
                    open = true
                    parts.append(ParsedPart(fields: h.fields.map { [$0.name, $0.value] }, name: h.name,
                                            filename: h.filename, contentType: h.contentType))
                case .partData(let d):
                    #expect(open, "partData outside a part")
                    #expect(d.count > 0, "empty partData")
                    parts[parts.count - 1].data.append(contentsOf: d)
                case .partEnd:
                    #expect(open, "partEnd outside a part")
                    open = false
                }
            }
        }
        #expect(parser.heldBackCount <= boundary.utf8.count + 4)
        start = end
    }
    try parser.finish()
    #expect(!open)
    return parts
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Deterministic generator so failures are reproducible.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Bodies, parsed whole and split everywhere

private struct BodyCase: Sendable, CustomTestStringConvertible {
    let label: String
    let boundary: String
    let body: [UInt8]
    let expected: [ParsedPart]
    var testDescription: String { label }
}



private let allBytes: [UInt8] = (0...255).map { UInt8($0) } + (0...255).reversed().map { UInt8($0) }

private let bodyCases: [BodyCase] = [
    BodyCase(
        label: "one file part",
        boundary: "----WebKitFormBoundary7MA4YWxkTrZu0gW",
        body: bytes("------WebKitFormBoundary7MA4YWxkTrZu0gW\r\n"
            + "Content-Disposition: form-data; name=\"upload\"; filename=\"hello.txt\"\r\n"
            + "Content-Type: text/plain\r\n\r\n"
            + "hello, world\n\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n"),
        expected: [ParsedPart(
            fields: [["Content-Disposition", "form-data; name=\"upload\"; filename=\"hello.txt\""],
                     ["Content-Type", "text/plain"]],
            name: "upload", filename: "hello.txt", contentType: "text/plain", data: bytes("hello, world\n"))]),
    BodyCase(
        label: "several parts, preamble, padding, epilogue",
        boundary: "xyz",
        body: bytes("This is the preamble.\r\n--xyz\r\n"
            + "content-DISPOSITION: form-data; name=\"title\"\r\n\r\n"
            + "My title\r\n--xyz \t\r\n"
            + "Content-Disposition: form-data; name=\"doc\"; filename=\"a b.pdf\"\r\n"
            + "Content-Type: application/pdf\r\nX-Extra:  spaced value  \r\n\r\n"
            + "%PDF-1.7 line one\r\nline two\r\n--xyz\r\n"
            + "Content-Disposition: form-data; name=\"note\"\r\n\r\n"
            + "last\r\n--xyz--  \r\nepilogue --xyz\r\n--xyz junk"),
        expected: [
            ParsedPart(fields: [["content-DISPOSITION", "form-data; name=\"title\""]],
                       name: "title", data: bytes("My title")),
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"doc\"; filename=\"a b.pdf\""],
                                ["Content-Type", "application/pdf"], ["X-Extra", "spaced value"]],
                       name: "doc", filename: "a b.pdf", contentType: "application/pdf",
                       data: bytes("%PDF-1.7 line one\r\nline two")),
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"note\""]],
                       name: "note", data: bytes("last")),
        ]),
    BodyCase(
        label: "empty parts and a part without headers",
        boundary: "b0",
        body: bytes("--b0\r\nContent-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n"
            + "Content-Type: application/octet-stream\r\n\r\n\r\n--b0\r\n"
            + "Content-Disposition: form-data; name=\"blank\"\r\n\r\n\r\n--b0\r\n"
            + "\r\nno headers\r\n--b0\r\n\r\n\r\n--b0--"),
        expected: [
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"empty\"; filename=\"\""],
                                ["Content-Type", "application/octet-stream"]],
                       name: "empty", filename: "", contentType: "application/octet-stream"),
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"blank\""]], name: "blank"),
            ParsedPart(data: bytes("no headers")),
            ParsedPart(),
        ]),
    BodyCase(
        label: "data resembling delimiters",
        boundary: "Boundary42",
        body: bytes("--Boundary42\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\r\n"
            + "--Boundary4\r\n--\r\n--X\r\n--Boundary4x\r\r\n-\r\n--Bound\n\r\n--Boundary43\r\r"
            + "\r\n--Boundary4\r\n--Boundary42\r\n"
            + "Content-Disposition: form-data; name=\"g\"\r\n\r\n"
            + "ends with CR\r\r\n--Boundary42\r\n"
            + "Content-Disposition: form-data; name=\"h\"\r\n\r\n"
            + "\r\n\r\n--Boundary42--"),
        expected: [
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"f\"; filename=\"x.bin\""]],
                       name: "f", filename: "x.bin",
                       data: bytes("--Boundary4\r\n--\r\n--X\r\n--Boundary4x\r\r\n-\r\n--Bound\n\r\n--Boundary43\r\r"
                                   + "\r\n--Boundary4")),
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"g\""]], name: "g",
                       data: bytes("ends with CR\r")),
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"h\""]], name: "h",
                       data: bytes("\r\n")),
        ]),
    BodyCase(
        label: "binary part with all byte values",
        boundary: "bin-boundary",
        body: bytes("--bin-boundary\r\nContent-Disposition: form-data; name=\"b\"; filename=\"all.bin\"\r\n"
            + "Content-Type: application/octet-stream\r\n\r\n")
            + allBytes + bytes("\r\n--bin-boundary\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\n")
            + allBytes.reversed() + bytes("\r\n--bin-boundary--\r\n"),
        expected: [
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"b\"; filename=\"all.bin\""],
                                ["Content-Type", "application/octet-stream"]],
                       name: "b", filename: "all.bin", contentType: "application/octet-stream", data: allBytes),
            ParsedPart(fields: [["Content-Disposition", "form-data; name=\"c\""]], name: "c",
                       data: allBytes.reversed()),
        ]),
]

private extension MultipartParserTests {
    @Test(arguments: bodyCases)
    func wholeBodyParsesAsExpected(_ c: BodyCase) throws {
        #expect(try parse(c.body, boundary: c.boundary) == c.expected)
    }

    @Test(arguments: bodyCases)
    func splitIntoTwoBlocksAtEveryOffset(_ c: BodyCase) throws {
        let whole = try parse(c.body, boundary: c.boundary)
        for cut in 0...c.body.count {
            let split = try parse(c.body, boundary: c.boundary, cuts: [cut])
            #expect(split == whole, "cut at \(cut)")
        }
    }

    @Test(arguments: bodyCases)
    func fedOneByteAtATime(_ c: BodyCase) throws {
        let whole = try parse(c.body, boundary: c.boundary)
        #expect(try parse(c.body, boundary: c.boundary, cuts: Array(1..<c.body.count)) == whole)
    }

    @Test(arguments: bodyCases)
    func fedInRandomBlockSizes(_ c: BodyCase) throws {
        let whole = try parse(c.body, boundary: c.boundary)
        var rng = SplitMix64(state: 42)
        for _ in 0..<50 {
            var cuts: [Int] = []
            var at = 0
            while true {
                at += Int.random(in: 1...16, using: &rng)
                if at >= c.body.count { break }
                cuts.append(at)
            }
            #expect(try parse(c.body, boundary: c.boundary, cuts: cuts) == whole)
        }
    }

    @Test func largeRandomPartInBigBlocksIsPassedThroughWithoutCopying() throws {
        var rng = SplitMix64(state: 7)
        var payload = [UInt8](repeating: 0, count: 1 << 20)
        for i in payload.indices { payload[i] = UInt8.random(in: 0...255, using: &rng) }
        let boundary = "----geckoformboundary1234"
        let body = bytes("--\(boundary)\r\nContent-Disposition: form-data; name=\"f\"; filename=\"r.bin\"\r\n\r\n")
            + payload + bytes("\r\n--\(boundary)--\r\n")
        var parser = MultipartParser(boundary: boundary)
        var received: [UInt8] = []
        var fromCallerBuffer = 0, events = 0
        let blockSize = 256 << 10
        try body.withUnsafeBytes { all in
            var off = 0
            while off < all.count {
                let block = UnsafeRawBufferPointer(rebasing: all[off..<min(off + blockSize, all.count)])
                try parser.feed(block) { event in
                    guard case .partData(let d) = event else { return }
                    events += 1
                    received.append(contentsOf: d)
                    if let b = d.baseAddress, let s = block.baseAddress, b >= s, b + d.count <= s + block.count {
                        fromCallerBuffer += 1
                    }
                }
                #expect(parser.heldBackCount <= boundary.utf8.count + 4)
                off += blockSize
            }
        }
        try parser.finish()
        #expect(received == payload)
        #expect(events <= 8)
        #expect(fromCallerBuffer == events)
    }
}

// MARK: - Filenames and Content-Disposition

private struct DispositionCase: Sendable, CustomTestStringConvertible {
    let header: String
    let name: String?
    let filename: String?
    var testDescription: String { header }
}

private let dispositionCases: [DispositionCase] = [
    .init(header: "form-data; name=\"file\"; filename=\"naïve café ünï 日本語.bin\"", name: "file",
          filename: "naïve café ünï 日本語.bin"),
    .init(header: "form-data; name=\"file\"; filename=\"a;b\\\"c'd.txt\"", name: "file", filename: "a;b\"c'd.txt"),
    .init(header: "form-data; name=\"file\"; filename=\"#1 hit.flac\"", name: "file", filename: "#1 hit.flac"),
    .init(header: "form-data; name=\"file\"; filename=\"90%hello.txt\"", name: "file", filename: "90%hello.txt"),
    .init(header: "form-data; name=\"file\"; filename=\"%C3%A9.txt\"", name: "file", filename: "%C3%A9.txt"),
    .init(header: "form-data; name=\"file\"; filename=\"  spaced  .txt\"", name: "file", filename: "  spaced  .txt"),
    .init(header: "form-data; name=\"file\"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.bin", name: "file",
          filename: "naïve café.bin"),
    .init(header: "form-data; name=\"file\"; filename=\"fallback.bin\"; filename*=UTF-8''na%C3%AFve.bin",
          name: "file", filename: "naïve.bin"),
    .init(header: "form-data; filename*=utf-8'en'%E2%82%AC%20rates.txt; filename=\"EUR rates.txt\"; name=x",
          name: "x", filename: "€ rates.txt"),
    .init(header: "form-data; name=f; filename*=iso-8859-1''caf%E9.txt", name: "f", filename: "café.txt"),
    .init(header: "form-data; name=f; filename=\"ok.txt\"; filename*=UTF-8''bad%ZZ", name: "f", filename: "ok.txt"),
    .init(header: "form-data; name=f; filename=\"ok.txt\"; filename*=UTF-8''%FF%FE", name: "f", filename: "ok.txt"),
    .init(header: "form-data; name=f; filename=\"ok.txt\"; filename*=koi8-r''%C1", name: "f", filename: "ok.txt"),
    .init(header: "form-data; name=plain; filename=token.txt", name: "plain", filename: "token.txt"),
    .init(header: "form-data; name=\"p\"; filename=\"../../etc/passwd\"", name: "p", filename: "../../etc/passwd"),
    .init(header: "form-data; name=\"p\"; filename=\"C:\\\\dir\\\\x.txt\"", name: "p", filename: "C:\\dir\\x.txt"),
    .init(header: "form-data; name=\"p\"; filename=\"\"", name: "p", filename: ""),
    .init(header: "Form-Data; NAME=\"upper\"; FileName=\"Y.TXT\"", name: "upper", filename: "Y.TXT"),
    .init(header: "form-data; name = \"sp\" ; filename = \"s.txt\" ", name: "sp", filename: "s.txt"),
    .init(header: "form-data; name=\"title\"", name: "title", filename: nil),
    .init(header: "form-data", name: nil, filename: nil),
]

private extension MultipartParserTests {
    @Test(arguments: dispositionCases)
    func contentDispositionParameters(_ c: DispositionCase) throws {
        let body = bytes("--B\r\nContent-Disposition: \(c.header)\r\n\r\ndata\r\n--B--\r\n")
        let parts = try parse(body, boundary: "B")
        try #require(parts.count == 1)
        #expect(parts[0].name == c.name)
        #expect(parts[0].filename == c.filename)
        #expect(parts[0].data == bytes("data"))
    }

    @Test func foldedHeaderAndMissingDisposition() throws {
        let body = bytes("--B\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nX-A: 1\r\n\r\nx\r\n--B--")
        let parts = try parse(body, boundary: "B")
        #expect(parts == [ParsedPart(fields: [["Content-Type", "text/plain; charset=utf-8"], ["X-A", "1"]],
                                     contentType: "text/plain; charset=utf-8", data: bytes("x"))])
    }
}

// MARK: - Boundary extraction

private struct BoundaryCase: Sendable, CustomTestStringConvertible {
    let contentType: String
    let boundary: String?
    var testDescription: String { contentType }
}

private let boundaryCases: [BoundaryCase] = [
    .init(contentType: "multipart/form-data; boundary=----abc", boundary: "----abc"),
    .init(contentType: "multipart/form-data; boundary=\"a b\"", boundary: "a b"),
    .init(contentType: "multipart/form-data;boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
          boundary: "----WebKitFormBoundary7MA4YWxkTrZu0gW"),
    .init(contentType: "Multipart/Form-Data; charset=utf-8; BOUNDARY=\"xyz\"", boundary: "xyz"),
    .init(contentType: "multipart/form-data; boundary=\"'()+_,-./:=?\"", boundary: "'()+_,-./:=?"),
    .init(contentType: "multipart/form-data; boundary=" + String(repeating: "x", count: 70),
          boundary: String(repeating: "x", count: 70)),
    .init(contentType: "multipart/form-data; boundary=" + String(repeating: "x", count: 71), boundary: nil),
    .init(contentType: "multipart/form-data", boundary: nil),
    .init(contentType: "multipart/form-data; charset=utf-8", boundary: nil),
    .init(contentType: "multipart/form-data; boundary=", boundary: nil),
    .init(contentType: "multipart/form-data; boundary=\"\"", boundary: nil),
    .init(contentType: "multipart/form-data; boundary=\"abc \"", boundary: nil),
    .init(contentType: "multipart/form-data; boundary=ab\u{E9}", boundary: nil),
    .init(contentType: "multipart/form-data; boundary=\"a\r\nb\"", boundary: nil),
    .init(contentType: "multipart/mixed; boundary=abc", boundary: nil),
    .init(contentType: "application/x-www-form-urlencoded", boundary: nil),
    .init(contentType: "text/plain; boundary=abc", boundary: nil),
    .init(contentType: "", boundary: nil),
]

private extension MultipartParserTests {
    @Test(arguments: boundaryCases)
    func boundaryFromContentType(_ c: BoundaryCase) {
        #expect(MultipartParser.boundary(fromContentType: c.contentType) == c.boundary)
    }
}

// MARK: - Errors

private let truncatedBodies: [String] = [
    "",
    "just a preamble\r\n",
    "--B",
    "--B\r\n",
    "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n",
    "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nsome data",
    "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nsome data\r\n--",
    "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nsome data\r\n--B",
    "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nsome data\r\n--B-",
    "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B\r\n\r\ny",
]

private extension MultipartParserTests {
    @Test(arguments: truncatedBodies)
    func truncatedBodyFailsOnFinish(_ body: String) throws {
        var parser = MultipartParser(boundary: "B")
        try bytes(body).withUnsafeBytes { try parser.feed($0) { _ in } }
        let error = #expect(throws: MultipartError.self) { try parser.finish() }
        #expect(error?.message.contains("cut short") == true)
    }
}

private struct MalformedCase: Sendable, CustomTestStringConvertible {
    let label: String
    let body: [UInt8]
    var testDescription: String { label }
}

private let malformedCases: [MalformedCase] = [
    .init(label: "header line without ':'",
          body: bytes("--B\r\nContent-Disposition form-data\r\n\r\nx\r\n--B--")),
    .init(label: "header with empty name", body: bytes("--B\r\n: value\r\n\r\nx\r\n--B--")),
    .init(label: "CR without LF in headers", body: bytes("--B\r\nX-A: 1\rX-B: 2\r\n\r\nx\r\n--B--")),
    .init(label: "LF without CR in headers", body: bytes("--B\r\nX-A: 1\nX-B: 2\r\n\r\nx\r\n--B--")),
    .init(label: "leading whitespace on first header", body: bytes("--B\r\n X-A: 1\r\n\r\nx\r\n--B--")),
    .init(label: "junk after the boundary", body: bytes("--B\r\nX-A: 1\r\n\r\nx\r\n--Bx\r\n\r\ny\r\n--B--")),
    .init(label: "single dash after the boundary", body: bytes("--B\r\nX-A: 1\r\n\r\nx\r\n--B-x")),
    .init(label: "header block over 16 KiB in one line",
          body: bytes("--B\r\nX-Big: " + String(repeating: "a", count: 17_000) + "\r\n\r\nx\r\n--B--")),
    .init(label: "header block over 16 KiB in many lines",
          body: bytes("--B\r\n" + String(repeating: "X-Many: " + String(repeating: "m", count: 90) + "\r\n", count: 200)
                      + "\r\nx\r\n--B--")),
]

private extension MultipartParserTests {
    @Test(arguments: malformedCases)
    func malformedInputThrows(_ c: MalformedCase) {
        // Whole, and one byte at a time; the error comes from feed, not from finish.
        for cuts in [[], Array(1..<c.body.count)] {
            let error = #expect(throws: MultipartError.self) { _ = try parse(c.body, boundary: "B", cuts: cuts) }
            #expect(error?.message.contains("cut short") == false)
        }
    }

    @Test func headerBlockJustUnderTheCapIsAccepted() throws {
        let value = String(repeating: "v", count: 16 * 1024 - 200)
        let body = bytes("--B\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Big: \(value)\r\n\r\nx\r\n--B--")
        let parts = try parse(body, boundary: "B")
        #expect(parts.count == 1 && parts[0].name == "a" && parts[0].fields[1][1] == value)
    }
}

private struct HandlerStop: Error, Equatable {}

private extension MultipartParserTests {
    @Test func handlerErrorIsRethrownAndParserStaysFailed() throws {
        var parser = MultipartParser(boundary: "B")
        let body = bytes("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--B--")
        #expect(throws: HandlerStop.self) {
            try body.withUnsafeBytes { try parser.feed($0) { if case .partBegin = $0 { throw HandlerStop() } } }
        }
        #expect(throws: MultipartError.self) { try bytes("more").withUnsafeBytes { try parser.feed($0) { _ in } } }
        #expect(throws: MultipartError.self) { try parser.finish() }
    }

    @Test(arguments: ["", String(repeating: "x", count: 71), "bad\r\nboundary", "trailing "])
    func invalidBoundaryMakesFeedThrow(_ boundary: String) {
        var parser = MultipartParser(boundary: boundary)
        #expect(throws: MultipartError.self) { try bytes("--x\r\n").withUnsafeBytes { try parser.feed($0) { _ in } } }
    }

    @Test func epilogueAfterCloseIsIgnoredAcrossFeeds() throws {
        let body = bytes("--B\r\n\r\nx\r\n--B--\r\n--B\r\nnot a header\r\n\r\n")
        #expect(try parse(body, boundary: "B", cuts: [14, 20]) == [ParsedPart(data: bytes("x"))])
    }
}
