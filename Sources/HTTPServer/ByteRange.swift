/// What to serve for a request's `Range` header (RFC 9110 §14.1–14.2), decided against a representation of
/// known size.
///
/// Parsing is defensive: anything the server would rather not honour falls back to `.whole`, which RFC 9110
/// permits (a server may always ignore `Range` and answer 200 with the full representation).
public enum RangeRequest: Equatable, Sendable {
    /// Serve 200 with the whole representation: no `Range` header, a unit other than `bytes`, a syntactically
    /// invalid ranges-specifier (RFC 9110 says to ignore it), or a request too costly to honour (more than
    /// ``maximumRanges`` ranges, overlapping ranges, or ranges adding up to more than the size).
    case whole
    /// Serve 206 with these ranges: one or more, each clamped to the size, in request order.
    /// Ranges that could not be satisfied have been dropped.
    case partial([ClosedRange<UInt64>])
    /// The syntax is valid but no range overlaps the representation: serve 416 with
    /// `Content-Range: bytes */size` (see ``unsatisfiedContentRange(size:)``).
    case unsatisfiable

    /// The largest number of ranges honoured in one request; more yields `.whole`.
    public static let maximumRanges = 16

    /// Decides what to serve for the `Range` header `header` (nil when absent) on a representation of `size` bytes.
    ///
    /// - `bytes=0-0` on 100 bytes is `[0...0]`; `bytes=-500` (a suffix longer than the size) is `[0...99]`;
    ///   `bytes=99-` is `[99...99]`; `bytes=100-` and `bytes=-0` are `.unsatisfiable`.
    /// - `bytes=5-2`, garbage, signs or numbers that overflow `UInt64` are invalid syntax: `.whole`.
    /// - The unit is matched case-insensitively; spaces and tabs are allowed around the commas of the list.
    public static func parse(_ header: String?, size: UInt64) -> RangeRequest {
        guard let header else { return .whole }
        guard let specs = parseRangeSet(Array(header.utf8)) else { return .whole }
        if specs.count > maximumRanges { return .whole }

        var ranges: [ClosedRange<UInt64>] = []
        for spec in specs {
            if let range = spec.resolved(size: size) { ranges.append(range) }
        }
        if ranges.isEmpty { return .unsatisfiable }

        // Abuse defences: overlapping ranges, or ranges totalling more than the representation, make a
        // multipart response costlier than serving the whole thing once.
        let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
        var total: UInt64 = 0
        for (index, range) in sorted.enumerated() {
            if index > 0 && range.lowerBound <= sorted[index - 1].upperBound { return .whole }
            // Each range lies within 0..<size, so its length (upper - lower + 1) cannot overflow.
            let (sum, overflow) = total.addingReportingOverflow(range.upperBound - range.lowerBound + 1)
            if overflow || sum > size { return .whole }
            total = sum
        }
        return .partial(ranges)
    }

    /// The `Content-Range` value for one range of a 206 response, e.g. `bytes 0-0/100`.
    public static func contentRange(_ range: ClosedRange<UInt64>, size: UInt64) -> String {
        "bytes \(range.lowerBound)-\(range.upperBound)/\(size)"
    }

    /// The `Content-Range` value for a 416 response, e.g. `bytes */100`.
    public static func unsatisfiedContentRange(size: UInt64) -> String {
        "bytes */\(size)"
    }

    // MARK: - Parsing

    /// One syntactically valid range-spec, before it is resolved against the size.
    private enum Spec {
        /// `first-last` or, when `last` is nil, `first-`; `first <= last` is already checked.
        case int(first: UInt64, last: UInt64?)
        /// `-length`: the final `length` bytes.
        case suffix(length: UInt64)

        /// The range clamped to `size`, or nil when it does not overlap the representation.
        func resolved(size: UInt64) -> ClosedRange<UInt64>? {
            guard size > 0 else { return nil }
            switch self {
            case let .int(first, last):
                guard first < size else { return nil }
                return first...min(last ?? (size - 1), size - 1)
            case let .suffix(length):
                guard length > 0 else { return nil }
                return (length >= size ? 0 : size - length)...(size - 1)
            }
        }
    }

    /// Parses `bytes=range-set`; nil when the unit is not `bytes` or the syntax is invalid.
    /// Stops early (returning more than ``maximumRanges`` specs) once the request is known to be too large.
    private static func parseRangeSet(_ bytes: [UInt8]) -> [Spec]? {
        let text = trimOWS(bytes[...])
        guard let equals = text.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        guard isBytesUnit(text[..<equals]) else { return nil }

        var specs: [Spec] = []
        // RFC 9110 §5.6.1: recipients accept empty list elements, but at least one element must be present.
        for element in text[(equals + 1)...].split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let trimmed = trimOWS(element)
            if trimmed.isEmpty { continue }
            guard let spec = parseSpec(trimmed) else { return nil }
            specs.append(spec)
            if specs.count > maximumRanges { return specs }
        }
        return specs.isEmpty ? nil : specs
    }

    private static func isBytesUnit(_ unit: ArraySlice<UInt8>) -> Bool {
        let expected = Array("bytes".utf8)
        guard unit.count == expected.count else { return false }
        // ASCII lower-casing: setting bit 0x20 maps A–Z onto a–z and leaves a–z alone.
        return zip(unit, expected).allSatisfy { $0 | 0x20 == $1 }
    }

    /// Parses `first-last`, `first-` or `-length`.
    private static func parseSpec(_ spec: ArraySlice<UInt8>) -> Spec? {
        guard let dash = spec.firstIndex(of: UInt8(ascii: "-")) else { return nil }
        let before = spec[..<dash]
        let after = spec[(dash + 1)...]
        if before.isEmpty {
            guard let length = parseDigits(after) else { return nil }
            return .suffix(length: length)
        }
        guard let first = parseDigits(before) else { return nil }
        if after.isEmpty { return .int(first: first, last: nil) }
        guard let last = parseDigits(after), last >= first else { return nil }
        return .int(first: first, last: last)
    }

    /// A non-empty run of ASCII digits as a `UInt64`; nil for anything else or on overflow.
    private static func parseDigits(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }

    /// `bytes` without leading and trailing optional whitespace (spaces and tabs, RFC 9110 §5.6.3).
    private static func trimOWS(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, first == 0x20 || first == 0x09 { slice.removeFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice.removeLast() }
        return slice
    }
}
