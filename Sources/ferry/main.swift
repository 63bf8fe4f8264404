import Ferry
import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

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
    let logger = Logger(label: "ferry")

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
    let server = Server(
        configuration: options.serverConfiguration, responder: FilesAPI(storage: storage, logger: logger), logger: logger)
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
    if storage.sweptTemporaryFiles > 0 {
        logger.info("swept_temporary_files", ["count": .of(storage.sweptTemporaryFiles)])
    }

    var received: Int32 = 0
    sigwait(&signals, &received)
    logger.info("stopping", ["signal": .string(received == SIGINT ? "SIGINT" : "SIGTERM")])
    server.stop()
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
