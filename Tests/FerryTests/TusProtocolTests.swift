import HTTPServer
import Testing

@testable import Ferry

@Suite struct TusProtocolTests {
    @Test(arguments: [
        ("0", UInt64(0)), ("1", 1), ("4294967297", 4_294_967_297), ("9223372036854775807", 9_223_372_036_854_775_807),
    ])
    func sizes(_ text: String, _ value: UInt64) throws {
        #expect(try TusProtocol.parseSize(text, header: "Upload-Length") == value)
    }

    @Test(arguments: ["", "-1", "+1", " 1", "1 ", "1.0", "0x10", "abc", "9223372036854775808", "99999999999999999999999"])
    func badSizes(_ text: String) {
        #expect(throws: HTTPError.self) { try TusProtocol.parseSize(text, header: "Upload-Length") }
    }

    @Test func absentSizeIsNil() throws {
        #expect(try TusProtocol.parseSize(nil, header: "Upload-Offset") == nil)
    }

    @Test func metadataPairs() throws {
        let pairs = try TusProtocol.parseMetadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,empty ")
        #expect(pairs.map(\.key) == ["filename", "is_confidential", "empty"])
        #expect(pairs[0].text == "world_domination_plan.pdf")
        #expect(pairs[1].value == nil)
        #expect(pairs[2].value == nil || pairs[2].value == [])
    }

    @Test func metadataWithUTF8() throws {
        let encoded = Base64.encode(Array("naïve café 日本語.bin".utf8))
        #expect(try TusProtocol.parseMetadata("filename \(encoded)").first?.text == "naïve café 日本語.bin")
    }

    @Test(arguments: [
        "filename !!!!", "a YQ==,a YQ==", "a  YQ==", "a YQ== extra", "a YQ", "a Y===", "a =YQ=", ",", "k\u{7F} YQ==",
    ])
    func malformedMetadata(_ header: String) {
        #expect(throws: HTTPError.self) { try TusProtocol.parseMetadata(header) }
    }

    @Test func emptyMetadataIsNone() throws {
        #expect(try TusProtocol.parseMetadata(nil).isEmpty)
        #expect(try TusProtocol.parseMetadata("  ").isEmpty)
    }

    @Test(arguments: ["", "f", "fo", "foo", "foob", "fooba", "foobar"])
    func base64RoundTrip(_ text: String) {
        let bytes = Array(text.utf8)
        #expect(Base64.decode(Base64.encode(bytes)) == bytes)
    }

    @Test(arguments: [("Zm9vYmFy", "foobar"), ("Zm9vYg==", "foob"), ("Zm9vYmE=", "fooba"), ("", "")])
    func base64Vectors(_ encoded: String, _ decoded: String) {
        #expect(Base64.decode(encoded) == Array(decoded.utf8))
        #expect(Base64.encode(Array(decoded.utf8)) == encoded)
    }

    @Test(arguments: ["0123456789abcdef0123456789abcdef", "ffffffffffffffffffffffffffffffff"])
    func validIDs(_ id: String) {
        #expect(Upload.isValidID(Substring(id)))
    }

    @Test(arguments: ["", "../../etc/passwd", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcde",
                      "0123456789abcdef0123456789abcdef0", "0123456789abcdef/123456789abcdef"])
    func invalidIDs(_ id: String) {
        #expect(!Upload.isValidID(Substring(id)))
    }
}

@Suite struct SHA256StateTests {
    @Test func aSavedStateResumesTheSameDigest() {
        let whole = SHA256()
        let first = Array("hello ".utf8)
        let second = Array("world".utf8)
        (first + second).withUnsafeBytes { whole.update($0) }
        let part = SHA256()
        first.withUnsafeBytes { part.update($0) }
        let resumed = SHA256(state: part.state)
        second.withUnsafeBytes { resumed?.update($0) }
        #expect(resumed?.finalizeHex() == whole.finalizeHex())
        #expect(whole.finalizeHex() != "")
    }

    @Test func knownDigest() {
        let digest = SHA256()
        Array("abc".utf8).withUnsafeBytes { digest.update($0) }
        #expect(digest.finalizeHex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func foreignStateIsRefused() {
        #expect(SHA256(state: [1, 2, 3]) == nil)
    }
}
