import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the call's name, the path it was about, and errno.
struct SystemError: Error, CustomStringConvertible {
    let call: String
    let path: String
    let code: Int32

    init(_ call: String, _ path: String, code: Int32 = errno) {
        self.call = call
        self.path = path
        self.code = code
    }

    var description: String { "\(call)(\(path)): \(String(cString: strerror(code))) (errno \(code))" }

    /// Whether the disk (or a quota) is full.
    var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
}

extension HTTPError {
    /// 507 for a full disk: what every upload path answers when the bytes do not fit.
    static func insufficientStorage(needed: UInt64? = nil, available: UInt64? = nil) -> HTTPError {
        var message = "The server's disk is full"
        var details: [(String, JSON)] = []
        if let needed, let available {
            message = "This upload needs \(needed) bytes but the server has only \(available) bytes free"
            details = [("needed", .uint(needed)), ("available", .uint(available))]
        }
        return HTTPError(
            507, code: "insufficient_storage",
            message + "; nothing was stored. Free some space (or ask the operator to) and upload again.",
            details: details)
    }
}
