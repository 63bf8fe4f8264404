import Testing

@testable import HTTPServer

private let etag = "\"5f3a-1000\""
/// Sun, 06 Nov 1994 08:49:37 GMT
private let lastModified: Int64 = 784_111_777
private let sameDate = "Sun, 06 Nov 1994 08:49:37 GMT"
private let earlierDate = "Sun, 06 Nov 1994 08:49:36 GMT"
private let laterDate = "Sun, 06 Nov 1994 08:49:38 GMT"

@Suite struct ConditionalRequestTests {
    /// One row of the precondition table; nil fields are absent headers.
    struct Preconditions: Sendable, CustomTestStringConvertible {
        var method = "GET"
        var ifMatch: String?
        var ifNoneMatch: String?
        var ifModifiedSince: String?
        var ifUnmodifiedSince: String?
        var expected: ConditionalOutcome

        var testDescription: String {
            let headers = [
                ifMatch.map { "If-Match: \($0)" }, ifNoneMatch.map { "If-None-Match: \($0)" },
                ifModifiedSince.map { "If-Modified-Since: \($0)" },
                ifUnmodifiedSince.map { "If-Unmodified-Since: \($0)" },
            ].compactMap { $0 }
            return "\(method) [\(headers.joined(separator: "; "))] → \(expected)"
        }
    }

    @Test(arguments: [
        // No preconditions.
        Preconditions(expected: .proceed),
        Preconditions(method: "HEAD", expected: .proceed),
        Preconditions(method: "PUT", expected: .proceed),

        // If-None-Match: weak comparison, `*`, lists; 304 for GET/HEAD, 412 otherwise.
        Preconditions(ifNoneMatch: etag, expected: .notModified),
        Preconditions(method: "HEAD", ifNoneMatch: etag, expected: .notModified),
        Preconditions(method: "PUT", ifNoneMatch: etag, expected: .preconditionFailed),
        Preconditions(method: "POST", ifNoneMatch: etag, expected: .preconditionFailed),
        Preconditions(method: "DELETE", ifNoneMatch: etag, expected: .preconditionFailed),
        Preconditions(method: "get", ifNoneMatch: etag, expected: .preconditionFailed),
        Preconditions(ifNoneMatch: "W/\"5f3a-1000\"", expected: .notModified),
        Preconditions(method: "PUT", ifNoneMatch: "W/\"5f3a-1000\"", expected: .preconditionFailed),
        Preconditions(ifNoneMatch: "*", expected: .notModified),
        Preconditions(ifNoneMatch: " * ", expected: .notModified),
        Preconditions(method: "PUT", ifNoneMatch: "*", expected: .preconditionFailed),
        Preconditions(ifNoneMatch: "\"other\"", expected: .proceed),
        Preconditions(method: "PUT", ifNoneMatch: "\"other\"", expected: .proceed),
        Preconditions(ifNoneMatch: "\"a\", \"5f3a-1000\"", expected: .notModified),
        Preconditions(ifNoneMatch: "\"a\",W/\"5f3a-1000\"", expected: .notModified),
        Preconditions(ifNoneMatch: " \"a\" ,\t\"5f3a-1000\" ", expected: .notModified),
        Preconditions(ifNoneMatch: "\"a\", , \"5f3a-1000\",", expected: .notModified),
        Preconditions(ifNoneMatch: "\"a,b\", \"5f3a-1000\"", expected: .notModified),
        Preconditions(ifNoneMatch: "\"a\", \"b\"", expected: .proceed),
        Preconditions(ifNoneMatch: "5f3a-1000", expected: .proceed),
        Preconditions(ifNoneMatch: "\"5F3A-1000\"", expected: .proceed),
        Preconditions(ifNoneMatch: "w/\"5f3a-1000\"", expected: .proceed),
        Preconditions(ifNoneMatch: "\"5f3a-1000", expected: .proceed),
        Preconditions(ifNoneMatch: "\"5f3a-1000\"x", expected: .notModified),
        Preconditions(ifNoneMatch: "\"a\" garbage, \"5f3a-1000\"", expected: .proceed),
        Preconditions(ifNoneMatch: "", expected: .proceed),

        // If-Modified-Since: GET/HEAD only, and only without If-None-Match.
        Preconditions(ifModifiedSince: sameDate, expected: .notModified),
        Preconditions(ifModifiedSince: laterDate, expected: .notModified),
        Preconditions(ifModifiedSince: earlierDate, expected: .proceed),
        Preconditions(method: "HEAD", ifModifiedSince: sameDate, expected: .notModified),
        Preconditions(ifModifiedSince: "Sun Nov  6 08:49:37 1994", expected: .notModified),
        Preconditions(ifModifiedSince: "Sunday, 06-Nov-94 08:49:37 GMT", expected: .notModified),
        Preconditions(ifModifiedSince: "yesterday", expected: .proceed),
        Preconditions(ifModifiedSince: "", expected: .proceed),
        Preconditions(ifModifiedSince: sameDate + "; length=1000", expected: .proceed),
        Preconditions(method: "PUT", ifModifiedSince: sameDate, expected: .proceed),
        Preconditions(method: "POST", ifModifiedSince: laterDate, expected: .proceed),
        Preconditions(ifNoneMatch: "\"other\"", ifModifiedSince: sameDate, expected: .proceed),
        Preconditions(ifNoneMatch: etag, ifModifiedSince: earlierDate, expected: .notModified),
        Preconditions(ifNoneMatch: "", ifModifiedSince: sameDate, expected: .proceed),

        // If-Match: strong comparison, `*`; 412 on failure whatever the method.
        Preconditions(ifMatch: etag, expected: .proceed),
        Preconditions(ifMatch: "*", expected: .proceed),
        Preconditions(ifMatch: "\"a\", \"5f3a-1000\"", expected: .proceed),
        Preconditions(ifMatch: " \"5f3a-1000\" ", expected: .proceed),
        Preconditions(ifMatch: "W/\"5f3a-1000\"", expected: .preconditionFailed),
        Preconditions(ifMatch: "\"other\"", expected: .preconditionFailed),
        Preconditions(ifMatch: "\"a\", \"b\"", expected: .preconditionFailed),
        Preconditions(ifMatch: "5f3a-1000", expected: .preconditionFailed),
        Preconditions(ifMatch: "garbage", expected: .preconditionFailed),
        Preconditions(ifMatch: "", expected: .preconditionFailed),
        Preconditions(method: "HEAD", ifMatch: "\"other\"", expected: .preconditionFailed),
        Preconditions(method: "PUT", ifMatch: etag, expected: .proceed),
        Preconditions(method: "PUT", ifMatch: "*", expected: .proceed),
        Preconditions(method: "PUT", ifMatch: "\"other\"", expected: .preconditionFailed),
        Preconditions(method: "DELETE", ifMatch: "W/\"5f3a-1000\"", expected: .preconditionFailed),

        // If-Unmodified-Since: only without If-Match; invalid dates ignored.
        Preconditions(ifUnmodifiedSince: sameDate, expected: .proceed),
        Preconditions(ifUnmodifiedSince: laterDate, expected: .proceed),
        Preconditions(ifUnmodifiedSince: earlierDate, expected: .preconditionFailed),
        Preconditions(ifUnmodifiedSince: "Sun Nov  6 08:49:36 1994", expected: .preconditionFailed),
        Preconditions(ifUnmodifiedSince: "not a date", expected: .proceed),
        Preconditions(method: "PUT", ifUnmodifiedSince: earlierDate, expected: .preconditionFailed),
        Preconditions(method: "PUT", ifUnmodifiedSince: sameDate, expected: .proceed),
        Preconditions(ifMatch: etag, ifUnmodifiedSince: earlierDate, expected: .proceed),
        Preconditions(ifMatch: "*", ifUnmodifiedSince: earlierDate, expected: .proceed),
        Preconditions(ifMatch: "\"other\"", ifUnmodifiedSince: laterDate, expected: .preconditionFailed),

        // Combinations, in RFC 9110 §13.2.2 order.
        Preconditions(ifMatch: etag, ifNoneMatch: etag, expected: .notModified),
        Preconditions(method: "PUT", ifMatch: etag, ifNoneMatch: etag, expected: .preconditionFailed),
        Preconditions(ifMatch: "\"other\"", ifNoneMatch: etag, expected: .preconditionFailed),
        Preconditions(ifMatch: "\"other\"", ifModifiedSince: sameDate, expected: .preconditionFailed),
        Preconditions(ifNoneMatch: etag, ifUnmodifiedSince: earlierDate, expected: .preconditionFailed),
        Preconditions(ifModifiedSince: sameDate, ifUnmodifiedSince: earlierDate, expected: .preconditionFailed),
        Preconditions(ifModifiedSince: sameDate, ifUnmodifiedSince: sameDate, expected: .notModified),
        Preconditions(ifModifiedSince: earlierDate, ifUnmodifiedSince: laterDate, expected: .proceed),
        Preconditions(
            ifMatch: etag, ifNoneMatch: "\"other\"", ifModifiedSince: sameDate, ifUnmodifiedSince: earlierDate,
            expected: .proceed),
    ])
    func evaluates(row: Preconditions) {
        let outcome = ConditionalRequest.evaluate(
            method: row.method, ifMatch: row.ifMatch, ifNoneMatch: row.ifNoneMatch,
            ifModifiedSince: row.ifModifiedSince, ifUnmodifiedSince: row.ifUnmodifiedSince,
            etag: etag, lastModified: lastModified)
        #expect(outcome == row.expected)
    }

    /// A weak (or malformed) current tag never matches strongly, but still matches weakly; `*` always matches.
    @Test(arguments: [
        ("W/\"5f3a-1000\"", "\"5f3a-1000\"", nil, ConditionalOutcome.preconditionFailed),
        ("W/\"5f3a-1000\"", "W/\"5f3a-1000\"", nil, .preconditionFailed),
        ("W/\"5f3a-1000\"", "*", nil, .proceed),
        ("W/\"5f3a-1000\"", nil, "\"5f3a-1000\"", .notModified),
        ("garbage", "\"garbage\"", nil, .preconditionFailed),
        ("garbage", "*", nil, .proceed),
        ("garbage", nil, "\"garbage\"", .proceed),
        ("garbage", nil, "*", .notModified),
    ] as [(String, String?, String?, ConditionalOutcome)])
    func evaluatesAgainstUnusualCurrentTags(
        currentTag: String, ifMatch: String?, ifNoneMatch: String?, expected: ConditionalOutcome
    ) {
        let outcome = ConditionalRequest.evaluate(
            method: "GET", ifMatch: ifMatch, ifNoneMatch: ifNoneMatch, ifModifiedSince: nil,
            ifUnmodifiedSince: nil, etag: currentTag, lastModified: lastModified)
        #expect(outcome == expected)
    }

    @Test(arguments: [
        (nil, true),
        // Entity tags: strong comparison only.
        (etag, true),
        (" \"5f3a-1000\"\t", true),
        ("W/\"5f3a-1000\"", false),
        ("\"other\"", false),
        ("\"5F3A-1000\"", false),
        ("\"5f3a-1000\", \"other\"", false),
        ("\"5f3a-1000", false),
        ("\"5f3a-1000\"x", false),
        ("*", false),
        ("", false),
        // Dates: exact equality.
        (sameDate, true),
        ("Sun Nov  6 08:49:37 1994", true),
        ("Sunday, 06-Nov-94 08:49:37 GMT", true),
        (earlierDate, false),
        (laterDate, false),
        ("not a date", false),
        ("Sun, 06 Nov 1994 08:49:37 UTC", false),
    ] as [(String?, Bool)])
    func decidesIfRange(ifRange: String?, allows: Bool) {
        #expect(ConditionalRequest.ifRangeAllows(ifRange, etag: etag, lastModified: lastModified) == allows)
    }

    @Test(arguments: ["W/\"5f3a-1000\"", "garbage"])
    func ifRangeNeverMatchesAnUnusualCurrentTag(currentTag: String) {
        #expect(!ConditionalRequest.ifRangeAllows("W/\"5f3a-1000\"", etag: currentTag, lastModified: lastModified))
        #expect(!ConditionalRequest.ifRangeAllows("\"5f3a-1000\"", etag: currentTag, lastModified: lastModified))
        #expect(ConditionalRequest.ifRangeAllows(sameDate, etag: currentTag, lastModified: lastModified))
    }
}
