import HTTPServer
import Testing

@testable import Ferry

@Suite struct HostPolicyTests {
    private func request(host: String?) -> Request {
        var headers = HTTPHeaders()
        if let host { headers.add("Host", host) }
        return Request(id: "t", method: "GET", path: "/api/files/", query: [:], headers: headers, clientAddress: "-")
    }

    @Test(arguments: [
        ("127.0.0.1:8080", "127.0.0.1"), ("LOCALHOST", "localhost"), ("[::1]:8080", "::1"), ("[::1]", "::1"),
        ("files.example.com.", "files.example.com"), ("files.example.com:443", "files.example.com"),
    ])
    func hostnames(_ header: String, _ name: String) {
        #expect(HostPolicy.hostname(of: header) == name)
    }

    /// (listening on, --allowed-hosts, Host header, answered)
    @Test(arguments: [
        ("127.0.0.1", nil, "127.0.0.1:8080", true),
        ("127.0.0.1", nil, "localhost:8080", true),
        ("127.0.0.1", nil, "app.localhost", true),
        ("127.0.0.1", nil, "192.168.1.5", true),
        ("127.0.0.1", nil, "[::1]:8080", true),
        ("127.0.0.1", nil, nil, true),
        ("127.0.0.1", nil, "evil.example:8080", false),
        ("127.0.0.1", nil, "127.0.0.1.evil.example", false),
        ("127.0.0.1", nil, "1270.0.0.1", false),
        ("::1", nil, "rebind.example", false),
        ("0.0.0.0", nil, "files.example.com", true),
        ("127.0.0.1", ["files.example.com"], "Files.Example.com", true),
        ("127.0.0.1", ["files.example.com"], "other.example.com", false),
        ("0.0.0.0", ["files.example.com"], "other.example.com", false),
        ("0.0.0.0", ["files.example.com"], "10.0.0.2:8080", true),
        ("127.0.0.1", ["*"], "anything.example", true),
    ] as [(String, [String]?, String?, Bool)])
    func policy(_ listen: String, _ allowed: [String]?, _ host: String?, _ answered: Bool) {
        let refusal = HostPolicy(allowed: allowed, listeningOn: listen).refuses(request(host: host))
        #expect((refusal == nil) == answered)
        if let refusal { #expect(refusal.status == 421) }
    }
}
