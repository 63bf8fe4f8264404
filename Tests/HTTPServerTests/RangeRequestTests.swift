import Testing

@testable import HTTPServer

/// 2^32 and 2^63, for sizes past 32 bits.
private let p32: UInt64 = 1 << 32
private let p63: UInt64 = 1 << 63

@Suite struct RangeRequestTests {
    /// Requests against a 100-byte representation.
    @Test(arguments: [
        // Absent header.
        (nil, RangeRequest.whole),
        // Single ranges.
        ("bytes=0-0", .partial([0...0])),
        ("bytes=0-99", .partial([0...99])),
        ("bytes=10-19", .partial([10...19])),
        ("bytes=50-999", .partial([50...99])),
        ("bytes=0-18446744073709551615", .partial([0...99])),
        ("bytes=99-", .partial([99...99])),
        ("bytes=0-", .partial([0...99])),
        ("bytes=000-009", .partial([0...9])),
        // Suffix ranges.
        ("bytes=-1", .partial([99...99])),
        ("bytes=-10", .partial([90...99])),
        ("bytes=-100", .partial([0...99])),
        ("bytes=-500", .partial([0...99])),
        ("bytes=-0", .unsatisfiable),
        // Unsatisfiable.
        ("bytes=100-", .unsatisfiable),
        ("bytes=100-200", .unsatisfiable),
        ("bytes=100-100", .unsatisfiable),
        ("bytes=100-,-0", .unsatisfiable),
        // Multiple ranges, in request order; unsatisfiable ones dropped.
        ("bytes=0-1,5-6", .partial([0...1, 5...6])),
        ("bytes=5-6,0-1", .partial([5...6, 0...1])),
        ("bytes=0-1,200-300", .partial([0...1])),
        ("bytes=-0,0-1", .partial([0...1])),
        ("bytes=200-,10-19,-0,90-", .partial([10...19, 90...99])),
        ("bytes=0-1,2-3", .partial([0...1, 2...3])),
        // Whitespace and case.
        ("bytes=0-1, 5-6", .partial([0...1, 5...6])),
        ("bytes=0-1 ,5-6", .partial([0...1, 5...6])),
        ("bytes=0-1 , \t5-6", .partial([0...1, 5...6])),
        ("  bytes=0-1  ", .partial([0...1])),
        ("BYTES=0-1", .partial([0...1])),
        ("Bytes=0-1", .partial([0...1])),
        ("bytes=0-1,,5-6", .partial([0...1, 5...6])),
        (",bytes=0-1", .whole),
        // Other units and invalid syntax.
        ("", .whole),
        ("items=0-1", .whole),
        ("bytes", .whole),
        ("bytes=", .whole),
        ("bytes= ", .whole),
        ("bytes=,", .whole),
        ("=0-1", .whole),
        ("bytes =0-1", .whole),
        ("byte=0-1", .whole),
        ("bytesx=0-1", .whole),
        ("bytes=5-2", .whole),
        ("bytes=0-1,5-2", .whole),
        ("bytes=-", .whole),
        ("bytes=--5", .whole),
        ("bytes=-5-", .whole),
        ("bytes=1-2-3", .whole),
        ("bytes=-1-2", .whole),
        ("bytes=+1-2", .whole),
        ("bytes=1-+2", .whole),
        ("bytes=a-b", .whole),
        ("bytes=0x1-2", .whole),
        ("bytes=1 -2", .whole),
        ("bytes=1- 2", .whole),
        ("bytes=0-1;5-6", .whole),
        ("bytes=0-1,garbage", .whole),
        ("bytes=１-２", .whole),
        ("bytes=18446744073709551616-", .whole),
        ("bytes=0-18446744073709551616", .whole),
        ("bytes=-18446744073709551616", .whole),
        ("bytes=99999999999999999999999-", .whole),
        // Abuse: overlapping ranges.
        ("bytes=0-10,5-15", .whole),
        ("bytes=0-10,10-20", .whole),
        ("bytes=0-,0-", .whole),
        ("bytes=0-0,0-0", .whole),
        ("bytes=50-60,-50", .whole),
        ("bytes=-10,-20", .whole),
        ("bytes=0-99,-1", .whole),
    ] as [(String?, RangeRequest)])
    func parsesAgainst100Bytes(header: String?, expected: RangeRequest) {
        #expect(RangeRequest.parse(header, size: 100) == expected)
    }

    /// Large representations: offsets past 2^32 and near 2^63 and 2^64.
    @Test(arguments: [
        ("bytes=4294967296-", p32 + 1, RangeRequest.partial([p32...p32])),
        ("bytes=4294967295-4294967296", p32 + 1, .partial([(p32 - 1)...p32])),
        ("bytes=-2", p32 + 1, .partial([(p32 - 1)...p32])),
        ("bytes=4294967297-", p32 + 1, .unsatisfiable),
        ("bytes=0-4294967296", p32 + 1, .partial([0...p32])),
        ("bytes=0-99999999999", p32 + 1, .partial([0...p32])),
        ("bytes=0-0,4294967290-", p32 + 1, .partial([0...0, (p32 - 6)...p32])),
        ("bytes=9223372036854775806-", p63 - 1, .partial([(p63 - 2)...(p63 - 2)])),
        ("bytes=-9223372036854775807", p63 - 1, .partial([0...(p63 - 2)])),
        ("bytes=-18446744073709551615", p63 - 1, .partial([0...(p63 - 2)])),
        ("bytes=9223372036854775807-", p63 - 1, .unsatisfiable),
        ("bytes=0-0,9223372036854775800-", p63 - 1, .partial([0...0, (p63 - 8)...(p63 - 2)])),
        ("bytes=9223372036854775808-", p63 + 1, .partial([p63...p63])),
        ("bytes=18446744073709551614-", UInt64.max, .partial([(UInt64.max - 1)...(UInt64.max - 1)])),
        ("bytes=0-", UInt64.max, .partial([0...(UInt64.max - 1)])),
        ("bytes=0-0,1-", UInt64.max, .partial([0...0, 1...(UInt64.max - 1)])),
        ("bytes=18446744073709551615-", UInt64.max, .unsatisfiable),
    ] as [(String, UInt64, RangeRequest)])
    func parsesLargeSizes(header: String, size: UInt64, expected: RangeRequest) {
        #expect(RangeRequest.parse(header, size: size) == expected)
    }

    /// An empty representation satisfies no range, yet invalid syntax is still ignored.
    @Test(arguments: [
        (nil, RangeRequest.whole),
        ("bytes=0-0", .unsatisfiable),
        ("bytes=0-", .unsatisfiable),
        ("bytes=-1", .unsatisfiable),
        ("bytes=-0", .unsatisfiable),
        ("bytes=0-1,-5", .unsatisfiable),
        ("bytes=5-2", .whole),
        ("bytes=x", .whole),
        ("items=0-1", .whole),
    ] as [(String?, RangeRequest)])
    func parsesAgainstEmptyRepresentation(header: String?, expected: RangeRequest) {
        #expect(RangeRequest.parse(header, size: 0) == expected)
    }

    /// Up to 16 ranges are honoured; a 17th makes the request `.whole`, satisfiable or not.
    @Test(arguments: [
        (1, false),
        (16, false),
        (17, true),
        (100, true),
    ])
    func limitsRangeCount(count: Int, expectWhole: Bool) {
        let ranges = (0..<count).map { "\($0 * 2)-\($0 * 2)" }
        let header = "bytes=" + ranges.joined(separator: ",")
        let result = RangeRequest.parse(header, size: 1000)
        if expectWhole {
            #expect(result == .whole)
        } else {
            let expected: [ClosedRange<UInt64>] = (0..<UInt64(count)).map { ($0 * 2)...($0 * 2) }
            #expect(result == .partial(expected))
        }
    }

    @Test func manyUnsatisfiableRangesAreWhole() {
        let header = "bytes=" + Array(repeating: "500-", count: 17).joined(separator: ",")
        #expect(RangeRequest.parse(header, size: 100) == .whole)
        let sixteen = "bytes=" + Array(repeating: "500-", count: 16).joined(separator: ",")
        #expect(RangeRequest.parse(sixteen, size: 100) == .unsatisfiable)
    }

    @Test(arguments: [
        (0...0, 100, "bytes 0-0/100"),
        (0...99, 100, "bytes 0-99/100"),
        (p32...p32, p32 + 1, "bytes 4294967296-4294967296/4294967297"),
        (0...(UInt64.max - 1), UInt64.max, "bytes 0-18446744073709551614/18446744073709551615"),
    ] as [(ClosedRange<UInt64>, UInt64, String)])
    func formatsContentRange(range: ClosedRange<UInt64>, size: UInt64, expected: String) {
        #expect(RangeRequest.contentRange(range, size: size) == expected)
    }

    @Test(arguments: [
        (0, "bytes */0"),
        (100, "bytes */100"),
        (p32 + 1, "bytes */4294967297"),
        (UInt64.max, "bytes */18446744073709551615"),
    ] as [(UInt64, String)])
    func formatsUnsatisfiedContentRange(size: UInt64, expected: String) {
        #expect(RangeRequest.unsatisfiedContentRange(size: size) == expected)
    }
}
