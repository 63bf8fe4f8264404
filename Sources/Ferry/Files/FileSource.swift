import HTTPServer

#if canImport(Glibc)
import Glibc
#endif

/// An open file, closed when the last reference goes.
final class OpenFile: Sendable {
    let descriptor: Int32
    init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { close(descriptor) }
}

/// A response body made of pieces: literal bytes (multipart headers) and slices of one file, read with
/// `pread` on demand. A plain download is one file slice.
///
/// Threading: read on the connection's event-loop thread, one call at a time; immutable otherwise.
final class FileSource: ByteSource {
    enum Piece: Sendable {
        case bytes([UInt8])
        case file(offset: UInt64, length: UInt64)

        var length: UInt64 {
            switch self {
            case .bytes(let bytes): return UInt64(bytes.count)
            case .file(_, let length): return length
            }
        }
    }

    private let file: OpenFile
    private let pieces: [Piece]
    /// Where each piece starts in the body.
    private let starts: [UInt64]
    let length: UInt64

    init(file: OpenFile, pieces: [Piece]) {
        self.file = file
        self.pieces = pieces
        var starts: [UInt64] = []
        var total: UInt64 = 0
        for piece in pieces {
            starts.append(total)
            total += piece.length
        }
        self.starts = starts
        length = total
    }

    func read(at position: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        // Find the piece holding `position` (few pieces: a linear scan from the end is enough).
        guard let index = starts.lastIndex(where: { $0 <= position }), position < length else { return -1 }
        let within = position - starts[index]
        switch pieces[index] {
        case .bytes(let bytes):
            let count = min(buffer.count, bytes.count - Int(within))
            bytes.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + Int(within), byteCount: count)
            }
            return count
        case .file(let offset, let pieceLength):
            let count = Int(min(UInt64(buffer.count), pieceLength - within))
            while true {
                let got = pread(file.descriptor, buffer.baseAddress, count, off_t(offset + within))
                if got < 0 && errno == EINTR { continue }
                // A file that shrank while being served ends the response as an error, never short.
                return got > 0 ? got : -1
            }
        }
    }
}
