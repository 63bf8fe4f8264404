import HTTPServer
import Testing

@testable import Ferry

@Suite struct RelativePathTests {
    @Test(arguments: [
        ("", [String]()),
        ("a", ["a"]),
        ("a/b/c.txt", ["a", "b", "c.txt"]),
        ("folder/", ["folder"]),
        ("na%C3%AFve%20caf%C3%A9.bin", ["naïve café.bin"]),
        ("%231%20hit.flac", ["#1 hit.flac"]),
        ("90%25hello.txt", ["90%hello.txt"]),
        ("a%3Bb%22c'd.txt", ["a;b\"c'd.txt"]),
        ("%20%20spaced%20%20.txt", ["  spaced  .txt"]),
        ("...", ["..."]),
        ("..a", ["..a"]),
        ("a\\b", ["a\\b"]),
    ])
    func acceptsEncodedPaths(_ encoded: String, _ expected: [String]) throws {
        #expect(try RelativePath(encoded: Substring(encoded)).components == expected)
    }

    @Test(arguments: [
        ("..", "bad_path"),
        ("a/../b", "bad_path"),
        ("%2e%2e", "bad_path"),
        ("a/%2E%2E/b", "bad_path"),
        (".", "bad_path"),
        ("a/./b", "bad_path"),
        ("/etc/passwd", "bad_path"),
        ("a//b", "bad_path"),
        ("a%2Fb", "bad_path"),
        ("a%2fb", "bad_path"),
        ("a%00b", "bad_path"),
        ("%zz", "bad_path"),
        ("%4", "bad_path"),
        ("%C3%28", "bad_path"),
        (".ferry", "reserved_path"),
        (".ferry/tmp/x", "reserved_path"),
        (String(repeating: "n", count: 256), "name_too_long"),
        (Array(repeating: String(repeating: "d", count: 200), count: 21).joined(separator: "/"), "path_too_long"),
    ])
    func refusesHostileEncodedPaths(_ encoded: String, _ code: String) {
        #expect {
            try RelativePath(encoded: Substring(encoded))
        } throws: { error in
            (error as? HTTPError)?.status == 400 && (error as? HTTPError)?.code == code
        }
    }

    @Test(arguments: ["../x", "/abs", "a//b", "a/./b", "x\u{0}y", ".ferry/lock"])
    func refusesHostilePlainPaths(_ plain: String) {
        #expect(throws: HTTPError.self) { try RelativePath(plain: plain) }
    }

    @Test func plainPathsKeepPercentSigns() throws {
        #expect(try RelativePath(plain: "docs/90%25.txt").components == ["docs", "90%25.txt"])
    }

    @Test func parentAndName() throws {
        let path = try RelativePath(encoded: "a/b/c.txt")
        #expect(path.name == "c.txt")
        #expect(path.parent.components == ["a", "b"])
        #expect(path.parent.parent.parent.isRoot)
    }
}

@Suite struct CollisionPolicyTests {
    @Test(arguments: [
        ([String: String](), CollisionPolicy.refuse),
        (["overwrite": "1"], .overwrite),
        (["overwrite": "true"], .overwrite),
        (["rename": "1"], .rename),
        (["rename": ""], .rename),
        (["overwrite": "0"], .refuse),
        (["other": "1"], .refuse),
    ])
    func policyFromQuery(_ query: [String: String], _ expected: CollisionPolicy) throws {
        #expect(try CollisionPolicy.from(query: query) == expected)
    }

    @Test func overwriteAndRenameTogetherAreRefused() {
        #expect(throws: HTTPError.self) { try CollisionPolicy.from(query: ["overwrite": "1", "rename": "1"]) }
    }

    @Test(arguments: [
        ("report.pdf", 1, "report (1).pdf"),
        ("report.pdf", 12, "report (12).pdf"),
        ("archive.tar.gz", 1, "archive (1).tar.gz"),
        ("archive.TAR.xz", 2, "archive (2).TAR.xz"),
        (".bashrc", 1, ".bashrc (1)"),
        ("README", 3, "README (3)"),
        ("a.b.c", 1, "a.b (1).c"),
        ("naïve café.bin", 1, "naïve café (1).bin"),
        (".tar.gz", 1, ".tar (1).gz"),
    ])
    func alternativeNames(_ name: String, _ attempt: Int, _ expected: String) {
        #expect(CollisionPolicy.alternative(to: name, attempt: attempt) == expected)
    }
}

@Suite struct FormNameTests {
    @Test(arguments: [
        ("a;b%22c'd.txt", "a;b\"c'd.txt"),
        ("90%hello.txt", "90%hello.txt"),
        ("line%0Abreak%0d", "line\nbreak\r"),
        ("100%", "100%"),
        ("%2", "%2"),
    ])
    func undoesTheWhatwgEscapes(_ sent: String, _ expected: String) {
        #expect(MultipartPartHeaders.unescapeFormName(sent) == expected)
    }
}

@Suite struct ContentDispositionTests {
    @Test(arguments: [
        ("plain.txt", false, "inline; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"),
        ("naïve.txt", true, "attachment; filename=\"na_ve.txt\"; filename*=UTF-8''na%C3%AFve.txt"),
        ("a;b\"c'd.txt", false, "inline; filename=\"a;b_c'd.txt\"; filename*=UTF-8''a%3Bb%22c%27d.txt"),
        ("90%hello.txt", false, "inline; filename=\"90_hello.txt\"; filename*=UTF-8''90%25hello.txt"),
    ])
    func values(_ name: String, _ attachment: Bool, _ expected: String) {
        #expect(ContentDisposition.value(fileName: name, attachment: attachment) == expected)
    }
}

@Suite struct ServeOptionsTests {
    @Test func defaults() throws {
        let options = try ServeOptions(arguments: [], environment: [:])
        #expect(options.root == "./data" && options.host == "127.0.0.1" && options.port == 8080)
        #expect(options.maximumRequestBody == nil)
    }

    @Test func flagsOverEnvironmentOverDefaults() throws {
        let options = try ServeOptions(
            arguments: ["--listen", "0.0.0.0:9000", "--max-request-body=95MiB"],
            environment: ["FERRY_LISTEN": "127.0.0.1:1", "FERRY_ROOT": "/srv/files", "FERRY_IDLE_TIMEOUT": "30"])
        #expect(options.host == "0.0.0.0" && options.port == 9000)
        #expect(options.root == "/srv/files")
        #expect(options.maximumRequestBody == 95 * 1_048_576)
        #expect(options.idleTimeout == 30)
    }

    @Test(arguments: [
        ("1048576", UInt64(1_048_576)), ("100M", 100_000_000), ("100MB", 100_000_000), ("95MiB", 99_614_720),
        ("2GiB", 2_147_483_648), ("1k", 1000), ("7 KiB", 7168),
    ])
    func sizes(_ text: String, _ bytes: UInt64) {
        #expect(ServeOptions.parseSize(text) == bytes)
    }

    @Test(arguments: ["", "abc", "12XB", "-5", "99999999999999999999", "18446744073709551615TiB"])
    func badSizes(_ text: String) {
        #expect(ServeOptions.parseSize(text) == nil)
    }

    @Test(arguments: [
        ["--listen", "nohost"], ["--listen", "1.2.3.4:99999"], ["--max-request-body", "lots"], ["--root"],
        ["--bogus", "1"], ["--idle-timeout", "0"], ["--threads", "0"],
    ])
    func invalidArguments(_ arguments: [String]) {
        #expect(throws: ServeOptions.Invalid.self) { try ServeOptions(arguments: arguments, environment: [:]) }
    }

    @Test func ipv6Listen() throws {
        let options = try ServeOptions(arguments: ["--listen", "[::1]:0"], environment: [:])
        #expect(options.host == "::1" && options.port == 0)
    }
}
