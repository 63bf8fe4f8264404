import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

/// The settings of `ferry serve`, from flags, then `FERRY_*` environment variables, then defaults.
public struct ServeOptions: Sendable, Equatable {
    /// One setting: its flag, its environment variable, its default and what it means. The README's
    /// configuration table and `ferry serve --help` are made from this list.
    public struct Setting: Sendable {
        public let flag: String
        public let variable: String
        public let defaultValue: String
        public let help: String
    }

    public static let settings: [Setting] = [
        Setting(flag: "--root", variable: "FERRY_ROOT", defaultValue: "./data",
                help: "Folder holding the files (created if missing)."),
        Setting(flag: "--listen", variable: "FERRY_LISTEN", defaultValue: "127.0.0.1:8080",
                help: "Address and port; port 0 picks a free port (printed in the first log line)."),
        Setting(flag: "--max-request-body", variable: "FERRY_MAX_REQUEST_BODY", defaultValue: "unlimited",
                help: "Largest request body in bytes (suffixes K, M, G, KiB, MiB, GiB); larger ones get 413."),
        Setting(flag: "--idle-timeout", variable: "FERRY_IDLE_TIMEOUT", defaultValue: "60",
                help: "Seconds a connection may stay idle before it is closed."),
        Setting(flag: "--max-connections-per-client", variable: "FERRY_MAX_CONNECTIONS_PER_CLIENT", defaultValue: "64",
                help: "Open connections allowed from one client address."),
        Setting(flag: "--threads", variable: "FERRY_THREADS", defaultValue: "number of cores",
                help: "Event-loop threads."),
        Setting(flag: "--max-upload-size", variable: "FERRY_MAX_UPLOAD_SIZE", defaultValue: "unlimited",
                help: "Largest resumable (tus) upload, advertised as Tus-Max-Size; larger ones get 413 at creation."),
        Setting(flag: "--cors-origins", variable: "FERRY_CORS_ORIGINS", defaultValue: "none",
                help: "Comma-separated origins allowed to call the API from a browser (CORS), or *."),
        Setting(flag: "--upload-expiry", variable: "FERRY_UPLOAD_EXPIRY", defaultValue: "86400",
                help: "Seconds an unfinished resumable upload may stay idle before it is removed."),
        Setting(flag: "--allowed-hosts", variable: "FERRY_ALLOWED_HOSTS", defaultValue: "localhost when on loopback, else any",
                help: "Comma-separated host names clients may use to reach Ferry (IP addresses always work), or *."),
    ]

    public var root = "./data"
    public var host = "127.0.0.1"
    public var port: UInt16 = 8080
    public var maximumRequestBody: UInt64? = nil
    public var idleTimeout: UInt32 = 60
    public var connectionsPerClient: UInt32 = 64
    public var threads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    public var maximumUploadSize: UInt64? = nil
    public var uploadExpiry = 86_400
    public var corsOrigins: [String] = []
    /// nil: the default (see `HostPolicy`).
    public var allowedHosts: [String]? = nil

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    public init() {}

    /// Parses `arguments` (after `serve`) over the environment's `FERRY_*` values over the defaults.
    public init(arguments: [String], environment: [String: String]) throws(Invalid) {
        var values: [String: String] = [:]
        for setting in ServeOptions.settings {
            if let value = environment[setting.variable] { values[setting.flag] = value }
        }
        var index = 0
        while index < arguments.count {
            var argument = arguments[index]
            var value: String?
            if let equals = argument.firstIndex(of: "=") {
                value = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            guard ServeOptions.settings.contains(where: { $0.flag == argument }) else {
                throw Invalid(description: "unknown option '\(argument)'; see 'ferry serve --help'")
            }
            if value == nil {
                index += 1
                guard index < arguments.count else { throw Invalid(description: "\(argument) needs a value") }
                value = arguments[index]
            }
            values[argument] = value
            index += 1
        }
        if let root = values["--root"] {
            guard !root.isEmpty else { throw Invalid(description: "--root must not be empty") }
            self.root = root
        }
        if let listen = values["--listen"] { (host, port) = try ServeOptions.parseListen(listen) }
        if let text = values["--max-request-body"] {
            maximumRequestBody = try ServeOptions.bytes(text, flag: "--max-request-body", example: "95MiB")
        }
        if let text = values["--max-upload-size"] {
            maximumUploadSize = try ServeOptions.bytes(text, flag: "--max-upload-size", example: "50GiB")
        }
        if let text = values["--idle-timeout"] {
            idleTimeout = UInt32(try ServeOptions.number(text, flag: "--idle-timeout", in: 1...86_400))
        }
        if let text = values["--max-connections-per-client"] {
            connectionsPerClient = UInt32(try ServeOptions.number(text, flag: "--max-connections-per-client", in: 1...65_535))
        }
        if let text = values["--upload-expiry"] {
            uploadExpiry = try ServeOptions.number(text, flag: "--upload-expiry", in: 1...Int(Int32.max))
        }
        if let text = values["--threads"] {
            threads = try ServeOptions.number(text, flag: "--threads", in: 1...256)
        }
        if let text = values["--allowed-hosts"] {
            allowedHosts = text.split(separator: ",").map { String($0).trimmingASCIIWhitespace() }.filter { !$0.isEmpty }
        }
        if let text = values["--cors-origins"] {
            corsOrigins = text.split(separator: ",").map { String($0).trimmingASCIIWhitespace() }.filter { !$0.isEmpty }
        }
    }

    private static func bytes(_ text: String, flag: String, example: String) throws(Invalid) -> UInt64 {
        guard let bytes = parseSize(text), bytes > 0 else {
            throw Invalid(description: "\(flag) must be a size in bytes such as \(example), got '\(text)'")
        }
        return bytes
    }

    private static func number(_ text: String, flag: String, in range: ClosedRange<Int>) throws(Invalid) -> Int {
        guard let value = Int(text), range.contains(value) else {
            throw Invalid(
                description: "\(flag) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// `HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces).
    static func parseListen(_ text: String) throws(Invalid) -> (String, UInt16) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            throw Invalid(description: "--listen must be HOST:PORT such as 127.0.0.1:8080, got '\(text)'")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        return (host, port)
    }

    /// `1048576`, `100M`/`100MB` (10^6), `95MiB` (2^20), and likewise K, G, T.
    public static func parseSize(_ text: String) -> UInt64? {
        let trimmed = text.trimmingASCIIWhitespace()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard let number = UInt64(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingPrefix(" ").lowercased()
        let multipliers: [String: UInt64] = [
            "": 1, "b": 1, "k": 1_000, "kb": 1_000, "kib": 1 << 10, "m": 1_000_000, "mb": 1_000_000, "mib": 1 << 20,
            "g": 1_000_000_000, "gb": 1_000_000_000, "gib": 1 << 30, "t": 1_000_000_000_000, "tb": 1_000_000_000_000,
            "tib": 1 << 40,
        ]
        guard let multiplier = multipliers[unit] else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// The HTTP engine's settings for these options.
    public var serverConfiguration: ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.threads = threads
        configuration.idleTimeout = idleTimeout
        configuration.connectionsPerClient = connectionsPerClient
        configuration.maximumRequestBody = maximumRequestBody
        return configuration
    }
}
