internal import CLinux
import Dispatch
import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

/// The concatenation extension: a final upload is assembled from its partial uploads in the background,
/// once all of them are filled, so the request that creates it (or fills the last part) answers at once.
/// `HEAD` shows the state (`Ferry-Assembly`), and the offset once it is done.
extension UploadStore {
    /// Starts concatenating `final` if every part has all its bytes and nothing else is doing it.
    func assembleIfReady(_ final: Upload) {
        let parts = final.kind.parts.compactMap { upload($0) }
        guard parts.count == final.kind.parts.count, parts.allSatisfy(\.isFilled) else { return }
        let starts = final.progress.withLock { progress -> Bool in
            guard progress.phase == .receiving else { return false }
            progress.phase = .assembling
            return true
        }
        guard starts else { return }
        DispatchQueue.global().async { self.assemble(final, parts: parts) }
    }

    /// A partial upload has all its bytes: final uploads waiting for it may start.
    func partialFilled(_ partial: Upload) {
        for final in finals(containing: partial.id) { assembleIfReady(final) }
    }

    /// Unfinished final uploads that include `partID`.
    func finals(containing partID: String) -> [Upload] {
        allUploads().filter { upload in
            guard upload.kind.parts.contains(partID) else { return false }
            if case .complete = upload.snapshot.phase { return false }
            return true
        }
    }

    private func assemble(_ final: Upload, parts: [Upload]) {
        do throws(HTTPError) {
            let total = try concatenate(parts, into: dataPath(final.id), final: final)
            _ = try complete(final)
            for part in parts { remove(part) }
            logger.info("upload_assembled", ["upload": .string(final.id), "parts": .of(parts.count), "bytes": .uint(total)])
        } catch {
            final.progress.withLock { $0.phase = .failed(error.message) }
            logger.error("upload_assembly_failed", ["upload": .string(final.id), "error": .string(error.message)])
        }
    }

    /// Copies the parts, in order, into the final upload's data file (in the kernel, with
    /// `copy_file_range`: no bytes pass through user space), hashing right behind; fsyncs and records it.
    private func concatenate(_ parts: [Upload], into path: String, final: Upload) throws(HTTPError) -> UInt64 {
        let output = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard output >= 0 else { throw HTTPError(500, code: "io_error", "Cannot open \(path) to assemble the upload.") }
        defer { close(output) }
        let hasher = TrailingHasher(path: path)
        var position: Int64 = 0
        for part in parts {
            let input = open(dataPath(part.id), O_RDONLY | O_CLOEXEC)
            guard input >= 0 else {
                throw HTTPError(500, code: "io_error", "The partial upload \(part.id) has lost its data.")
            }
            defer { close(input) }
            var inputOffset: Int64 = 0
            var remaining = Int64(part.snapshot.offset)
            while remaining > 0 {
                let step = Int(min(remaining, 64 << 20))
                let copied = copy_file_range(input, &inputOffset, output, &position, step, 0)
                if copied < 0 && errno == EINTR { continue }
                guard copied > 0 else {
                    let error = SystemError("copy_file_range", path)
                    if error.isNoSpace { throw HTTPError.insufficientStorage() }
                    throw HTTPError(500, code: "io_error", "The server could not assemble the upload: \(error).")
                }
                remaining -= Int64(copied)
                hasher.advance(to: UInt64(position))
            }
        }
        let total = UInt64(position)
        hasher.wake()
        guard fsync(output) == 0, let state = hasher.checkpoint(size: total) else {
            throw HTTPError(500, code: "io_error", "The server could not make the assembled upload durable.")
        }
        try saveProgress(final, offset: total, hash: .init(size: total, state: state), length: total)
        return total
    }
}
