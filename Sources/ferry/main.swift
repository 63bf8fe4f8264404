import Ferry
import HTTPServer
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Log lines held back while starting.
final class LineBuffer: Sendable {
    private let buffer = Mutex<[String]>([])
    func append(_ line: String) { buffer.withLock { $0.append(line) } }
    var lines: [String] { buffer.withLock { $0 } }
}

let usage = """
    Ferry: a self-hosted file server for big files.

    Usage:
      ferry serve [options]   Serve the files API (see 'ferry serve --help')
      ferry --version         Print the version
      ferry --help            Print this help

    """

func serveHelp() -> String {
    var text = "Usage: ferry serve [options]\n\nOptions (each also settable by its environment variable):\n"
    for setting in ServeOptions.settings {
        text += "  \(setting.flag) VALUE\n      \(setting.help)\n      env \(setting.variable), default \(setting.defaultValue)\n"
    }
    return text
}

func fail(_ message: String, code: Int32 = 2) -> Never {
    Logger.standardError("ferry: \(message)\n")
    exit(code)
}

func environment() -> [String: String] {
    var values: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            values[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return values
}

func serve(_ arguments: [String]) -> Never {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(serveHelp(), terminator: "")
        exit(0)
    }
    let options: ServeOptions
    do {
        options = try ServeOptions(arguments: arguments, environment: environment())
    } catch {
        fail(error.description)
    }
    ProcessTuning.limitMallocArenas()
    let logger = Logger(label: "ferry")
    // Lines logged while starting (recovered uploads, say) follow the 'listening' line, which comes first.
    let startupLines = LineBuffer()
    let startupLogger = Logger(label: "ferry") { line in startupLines.append(line) }

    // Signals are taken by sigwait on this thread: block them before any other thread starts.
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &signals, nil)
    signal(SIGPIPE, SIG_IGN)

    let storage: Storage
    do {
        storage = try Storage(root: options.root)
    } catch {
        fail(error.description, code: 1)
    }
    let app: FerryApp
    do {
        app = try FerryApp(storage: storage, options: options, logger: logger, startupLogger: startupLogger)
    } catch {
        fail("cannot open the upload store in \(storage.root)/.ferry: \(error)", code: 1)
    }
    let server = Server(configuration: options.serverConfiguration, responder: app, logger: logger)
    do {
        try server.start()
    } catch {
        fail(error.description, code: 1)
    }
    let host = options.host.contains(":") ? "[\(options.host)]" : options.host
    logger.info(
        "listening",
        [
            "address": .string("\(host):\(server.port)"), "url": .string("http://\(host):\(server.port)/"),
            "root": .string(storage.root), "version": .string(Ferry.version),
            "max_request_body": options.maximumRequestBody.map { .uint($0) } ?? "unlimited",
        ])
    for line in startupLines.lines { Logger.standardError(line) }
    if storage.sweptTemporaryFiles > 0 {
        logger.info("swept_temporary_files", ["count": .of(storage.sweptTemporaryFiles)])
    }

    var received: Int32 = 0
    sigwait(&signals, &received)
    logger.info("stopping", ["signal": .string(received == SIGINT ? "SIGINT" : "SIGTERM")])
    server.stop()
    // Interrupted uploads are being recorded or removed in the background: let that finish.
    if !BackgroundWork.wait(seconds: 10) { logger.warning("stopped_with_background_work") }
    logger.info("stopped")
    exit(0)
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "serve":
    serve(Array(arguments.dropFirst()))
case "--version", "-V", "version":
    print("ferry \(Ferry.version)")
case "--help", "-h", "help", nil:
    print(usage, terminator: "")
default:
    fail("unknown command '\(arguments[0])'\n\n" + usage)
}
