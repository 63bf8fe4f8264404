import Glibc
import Testing

@testable import HTTPServer

/// 2026-05-28T20:26:40Z, the "current time" for RFC 850 two-digit years.
private let now2026: Int64 = 1_780_000_000
/// 2090-01-01T00:00:00Z.
private let now2090: Int64 = 3_786_912_000

@Suite struct HTTPDateTests {
    @Test(arguments: [
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
        (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
        (-2_203_891_200, "Thu, 01 Mar 1900 00:00:00 GMT"),
        (-11_644_473_600, "Mon, 01 Jan 1601 00:00:00 GMT"),
        (-12_219_292_800, "Fri, 15 Oct 1582 00:00:00 GMT"),
        (1_780_000_000, "Thu, 28 May 2026 20:26:40 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (-62_167_219_200, "Sat, 01 Jan 0000 00:00:00 GMT"),
        // Clamped to four-digit years.
        (253_402_300_800, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (Int64.max, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (-62_167_219_201, "Sat, 01 Jan 0000 00:00:00 GMT"),
        (Int64.min, "Sat, 01 Jan 0000 00:00:00 GMT"),
    ] as [(Int64, String)])
    func formats(seconds: Int64, expected: String) {
        #expect(HTTPDate.format(seconds) == expected)
    }

    /// `format` agrees with Glibc's `gmtime_r` + `strftime` (C locale) across centuries.
    @Test(arguments: [
        -2_208_988_800, -1_000_000_001, -86_401, 1, 59, 86_399, 86_400, 68_169_600, 946_684_799, 946_684_800,
        1_234_567_890, 1_700_000_000, 4_294_967_296, 7_258_118_400, 32_503_680_000, 99_999_999_999,
    ] as [Int64])
    func formatMatchesGlibc(seconds: Int64) {
        var time = time_t(seconds)
        var parts = tm()
        #expect(gmtime_r(&time, &parts) != nil)
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        let expected = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(HTTPDate.format(seconds) == expected)
        #expect(HTTPDate.parse(expected) == seconds)
    }

    /// Every format round-trips through `parse`, including every day of a leap year and of a century year.
    @Test(arguments: [1_704_067_200, 4_102_444_800, -2_208_988_800] as [Int64])
    func roundTripsEveryDayOfAYear(startOfYear: Int64) {
        for day in 0..<366 {
            let seconds = startOfYear + Int64(day) * 86_400 + 45_296
            #expect(HTTPDate.parse(HTTPDate.format(seconds)) == seconds)
        }
    }

    @Test(arguments: [
        // IMF-fixdate.
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Wed, 31 Dec 1969 23:59:59 GMT", -1),
        ("Tue, 29 Feb 2000 00:00:00 GMT", 951_782_400),
        ("Tue, 19 Jan 2038 03:14:08 GMT", 2_147_483_648),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799),
        ("Sat, 01 Jan 0000 00:00:00 GMT", -62_167_219_200),
        ("  Sun, 06 Nov 1994 08:49:37 GMT\t", 784_111_777),
        // A leap second counts as the next minute's first second.
        ("Tue, 31 Dec 2024 23:59:60 GMT", 1_735_689_600),
        // The day name is not checked against the date.
        ("Mon, 06 Nov 1994 08:49:37 GMT", 784_111_777),
        // asctime.
        ("Sun Nov  6 08:49:37 1994", 784_111_777),
        ("Sun Nov 06 08:49:37 1994", 784_111_777),
        ("Thu Jan  1 00:00:00 1970", 0),
        ("Tue Feb 29 00:00:00 2000", 951_782_400),
        // RFC 850, read in 2026.
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784_111_777),
        // 2070 is less than 50 years after 2026, so `70` means 2070.
        ("Thursday, 01-Jan-70 00:00:00 GMT", 3_155_760_000),
        ("Tuesday, 29-Feb-00 00:00:00 GMT", 951_782_400),
        ("Wednesday, 01-Jan-26 00:00:00 GMT", 1_767_225_600),
        ("Friday, 06-Nov-76 08:49:37 GMT", 3_371_878_177),
        ("Sunday, 06-Nov-77 08:49:37 GMT", 247_654_177),
        ("Saturday, 06-Nov-77 08:49:37 GMT", 247_654_177),
        ("Monday, 06-Nov-77 08:49:37 GMT", 247_654_177),
    ] as [(String, Int64)])
    func parsesValidDates(text: String, expected: Int64) {
        #expect(HTTPDate.parse(text, now: now2026) == expected)
    }

    @Test(arguments: [
        "",
        "   ",
        "garbage",
        "784111777",
        "1994-11-06T08:49:37Z",
        // IMF-fixdate deviations.
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 08:49:37 GMT; length=1234",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT ",
        "Sun, 06  Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-1994 08:49:37 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "SUN, 06 Nov 1994 08:49:37 GMT",
        "Sux, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sun, 06 November 1994 08:49:37 GMT",
        "Sun, 0x Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 19x4 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37.5 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, +6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov -994 08:49:37 GMT",
        // Out-of-range fields.
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 32 Jan 1994 08:49:37 GMT",
        "Sun, 30 Feb 2000 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        // asctime deviations.
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun Nov 31 08:49:37 1994",
        "Sun Nov  0 08:49:37 1994",
        "Sunday Nov  6 08:49:37 1994",
        "Sun Nov x6 08:49:37 1994",
        // RFC 850 deviations.
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37",
        "Sunday 06-Nov-94 08:49:37 GMT",
        "sunday, 06-Nov-94 08:49:37 GMT",
        "Someday, 06-Nov-94 08:49:37 GMT",
        "Sunday, 31-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-94 25:49:37 GMT",
        // Non-ASCII.
        "Sun, 06 Nov 1994 08:49:37 GMT\u{00A0}",
        "Sün, 06 Nov 1994 08:49:37 GMT",
        "Sun, ０6 Nov 1994 08:49:37 GMT",
    ])
    func rejectsInvalidDates(text: String) {
        #expect(HTTPDate.parse(text, now: now2026) == nil)
        #expect(HTTPDate.parse(text) == nil)
    }

    /// RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the latest past year with those digits.
    @Test(arguments: [
        (now2026, "94", 1994),
        (now2026, "00", 2000),
        (now2026, "26", 2026),
        (now2026, "76", 2076),
        (now2026, "77", 1977),
        (now2026, "99", 1999),
        (now2090, "30", 2130),
        (now2090, "40", 2140),
        (now2090, "41", 2041),
        (now2090, "89", 2089),
        (now2090, "99", 2099),
    ] as [(Int64, String, Int)])
    func resolvesTwoDigitYears(now: Int64, shortYear: String, year: Int) throws {
        let parsed = try #require(HTTPDate.parse("Monday, 01-Mar-\(shortYear) 00:00:00 GMT", now: now))
        #expect(parsed == HTTPDate.days(fromCivil: year, 3, 1) * 86_400)
    }

    /// Without an explicit clock, an RFC 850 date from the 1990s still reads as the 1990s.
    @Test func parsesRFC850WithCurrentClock() {
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == 784_111_777)
    }

    @Test(arguments: [
        (1970, 1, 1, 0),
        (1969, 12, 31, -1),
        (2000, 3, 1, 11_017),
        (1600, 2, 29, -135_081),
        (0, 1, 1, -719_528),
        (9999, 12, 31, 2_932_896),
    ] as [(Int, Int, Int, Int64)])
    func convertsCivilDates(year: Int, month: Int, day: Int, days: Int64) {
        #expect(HTTPDate.days(fromCivil: year, month, day) == days)
        let civil = HTTPDate.civil(fromDays: days)
        #expect(civil.year == year && civil.month == month && civil.day == day)
    }
}
