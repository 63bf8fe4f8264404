import Dispatch
import Testing

@testable import Ferry

#if canImport(Glibc)
import Glibc
#endif

/// `StagedWriter` puts every byte at its place and hashes exactly those bytes, whatever the alignment of
/// the start and of each block, with direct I/O and without, and its flow control always resumes.
@Suite struct StagedWriterTests {
    /// A block-size pattern that crosses buffer and 4 KiB boundaries at odd places.
    static let blockSizes = [1, 7, 4096, 65_537, 262_144, 300_001, 4095, 131_072, 12_345]

    @Test(arguments: [true, false], [0, 1, 4095, 4096, 300_000])
    func writesAndHashesEveryByte(directIO: Bool, start: Int) throws {
        let path = "/tmp/ferry-staged-\(getpid())-\(directIO)-\(start)"
        defer { unlink(path) }
        let descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(descriptor >= 0)
        defer { close(descriptor) }

        var generator = SystemRandomNumberGenerator()
        let total = start + 3 * 1024 * 1024 + 777
        let words = (0..<(total + 7) / 8).map { _ in generator.next() }
        let bytes = words.withUnsafeBytes { Array($0.prefix(total)) }
        let expected = SHA256()
        bytes.withUnsafeBytes { expected.update($0) }

        // The bytes before `start` are already in the file, with their digest state recorded.
        let prefix = SHA256()
        bytes.withUnsafeBytes { all in
            let head = UnsafeRawBufferPointer(rebasing: all[0..<start])
            prefix.update(head)
            _ = pwrite(descriptor, head.baseAddress, start, 0)
        }
        let writer = StagedWriter(
            path: path, descriptor: descriptor, offset: UInt64(start),
            digest: try #require(SHA256(state: prefix.state)), directIO: directIO)
        var position = start
        var index = 0
        while position < total {
            let count = min(Self.blockSizes[index % Self.blockSizes.count], total - position)
            index += 1
            try bytes.withUnsafeBytes { all in
                try writer.append(UnsafeRawBufferPointer(rebasing: all[position..<position + count]))
            }
            position += count
            let resumed = DispatchSemaphore(value: 0)
            if writer.pauses(until: { resumed.signal() }) {
                #expect(resumed.wait(timeout: .now() + 10) == .success, "a paused writer must resume")
            }
        }
        #expect(writer.position == UInt64(total))
        // Sealed, it holds the body back until its last bytes have landed.
        writer.seal()
        let landed = DispatchSemaphore(value: 0)
        if writer.pauses(until: { landed.signal() }) {
            #expect(landed.wait(timeout: .now() + 10) == .success, "a sealed writer must resume")
        }
        let digest = try writer.drain()
        #expect(digest.finalizeHex() == expected.finalizeHex())

        var stored = [UInt8](repeating: 0, count: total + 1)
        let read = stored.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, total + 1, 0) }
        #expect(read == total)
        #expect(Array(stored[0..<total]) == bytes)
    }
}
