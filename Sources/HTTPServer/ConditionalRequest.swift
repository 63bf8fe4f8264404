/// The result of evaluating a request's preconditions.
public enum ConditionalOutcome: Equatable, Sendable {
    /// No precondition stops the request: handle it as usual.
    case proceed
    /// Answer 304 Not Modified (GET or HEAD whose cached copy is current).
    case notModified
    /// Answer 412 Precondition Failed.
    case preconditionFailed
}

/// Evaluation of conditional request header fields (RFC 9110 §13) against a representation's validators.
public struct ConditionalRequest {
    /// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since` in the order of
    /// RFC 9110 §13.2.2 (header values are nil when absent).
    ///
    /// 1. `If-Match` (strong comparison, `*` matches): no match → `.preconditionFailed`.
    /// 2. Otherwise `If-Unmodified-Since`: modified after the date → `.preconditionFailed`.
    /// 3. `If-None-Match` (weak comparison, `*` matches): a match → `.notModified` for GET and HEAD,
    ///    `.preconditionFailed` for other methods.
    /// 4. Otherwise, for GET and HEAD only, `If-Modified-Since`: not modified since the date → `.notModified`.
    ///
    /// Invalid dates are ignored; a list with a malformed entity-tag counts only the tags before it.
    ///
    /// - Parameters:
    ///   - etag: the representation's strong entity tag including quotes, e.g. `"\"5f3a-1000\""`.
    ///   - lastModified: the representation's modification time in seconds since the epoch.
    public static func evaluate(
        method: String, ifMatch: String?, ifNoneMatch: String?, ifModifiedSince: String?,
        ifUnmodifiedSince: String?, etag: String, lastModified: Int64
    ) -> ConditionalOutcome {
        let current = EntityTag.parseSingle(etag)
        let isGetOrHead = method == "GET" || method == "HEAD"

        if let ifMatch {
            if !listMatches(ifMatch, current, weak: false) { return .preconditionFailed }
        } else if let ifUnmodifiedSince, let date = HTTPDate.parse(ifUnmodifiedSince) {
            if lastModified > date { return .preconditionFailed }
        }

        if let ifNoneMatch {
            if listMatches(ifNoneMatch, current, weak: true) { return isGetOrHead ? .notModified : .preconditionFailed }
        } else if isGetOrHead, let ifModifiedSince, let date = HTTPDate.parse(ifModifiedSince) {
            if lastModified <= date { return .notModified }
        }
        return .proceed
    }

    /// Whether a `Range` request should be honoured given its `If-Range` value (nil header → true).
    ///
    /// An entity-tag must match `etag` strongly (weak tags never match); an HTTP-date must equal
    /// `lastModified` exactly. Anything else, including an invalid date, does not match, so the whole
    /// representation is served.
    public static func ifRangeAllows(_ ifRange: String?, etag: String, lastModified: Int64) -> Bool {
        guard let ifRange else { return true }
        let value = Array(ifRange.utf8)
        let trimmed = String(decoding: EntityTag.trimOWS(value[...]), as: UTF8.self)
        if trimmed.hasPrefix("\"") || trimmed.hasPrefix("W/") {
            guard let tag = EntityTag.parseSingle(trimmed), let current = EntityTag.parseSingle(etag) else {
                return false
            }
            return tag.matches(current, weak: false)
        }
        return HTTPDate.parse(trimmed) == lastModified
    }

    /// Whether the `If-Match` / `If-None-Match` value `list` matches `current` (nil when the representation's
    /// own tag is malformed, in which case only `*` matches).
    private static func listMatches(_ list: String, _ current: EntityTag?, weak: Bool) -> Bool {
        var matched = false
        EntityTag.scanList(Array(list.utf8)) { element in
            switch element {
            case .any:
                matched = true
            case let .tag(tag):
                if let current, tag.matches(current, weak: weak) { matched = true }
            }
            return !matched
        }
        return matched
    }
}

extension ConditionalRequest {
    /// An entity-tag (RFC 9110 §8.8.3): `"opaque"` or `W/"opaque"`.
    fileprivate struct EntityTag {
        var isWeak: Bool
        var opaque: ArraySlice<UInt8>

        /// Strong comparison: both strong and equal. Weak comparison: equal opaque tags.
        func matches(_ other: EntityTag, weak: Bool) -> Bool {
            (weak || (!isWeak && !other.isWeak)) && opaque.elementsEqual(other.opaque)
        }

        enum ListElement {
            case any
            case tag(EntityTag)
        }

        /// Exactly one entity-tag, optionally surrounded by whitespace.
        static func parseSingle(_ text: String) -> EntityTag? {
            let bytes = Array(text.utf8)
            guard let (tag, end) = parse(bytes, from: skipOWS(bytes, from: 0)), skipOWS(bytes, from: end) == bytes.count
            else { return nil }
            return tag
        }

        /// Walks a `*` / `#entity-tag` list, calling `body` per element until it returns false or the list ends.
        /// Empty elements are skipped; scanning stops at the first malformed element.
        static func scanList(_ bytes: [UInt8], _ body: (ListElement) -> Bool) {
            var index = 0
            while index < bytes.count {
                index = skipOWS(bytes, from: index)
                if index == bytes.count { return }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                let element: ListElement
                if bytes[index] == UInt8(ascii: "*") {
                    element = .any
                    index += 1
                } else if let (tag, end) = parse(bytes, from: index) {
                    element = .tag(tag)
                    index = end
                } else {
                    return
                }
                if !body(element) { return }
                // After an element: optional whitespace, then a comma or the end.
                index = skipOWS(bytes, from: index)
                if index < bytes.count && bytes[index] != UInt8(ascii: ",") { return }
            }
        }

        /// Parses `[W/]"etagc*"` at `index`, returning the tag and the index just past it.
        private static func parse(_ bytes: [UInt8], from start: Int) -> (EntityTag, Int)? {
            var index = start
            var isWeak = false
            if index + 1 < bytes.count && bytes[index] == UInt8(ascii: "W") && bytes[index + 1] == UInt8(ascii: "/") {
                isWeak = true
                index += 2
            }
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            let opaqueStart = index + 1
            index = opaqueStart
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    return (EntityTag(isWeak: isWeak, opaque: bytes[opaqueStart..<index]), index + 1)
                }
                // etagc = %x21 / %x23-7E / obs-text
                guard byte == 0x21 || byte >= 0x23 && byte != 0x7F else { return nil }
                index += 1
            }
            return nil
        }

        private static func skipOWS(_ bytes: [UInt8], from start: Int) -> Int {
            var index = start
            while index < bytes.count && (bytes[index] == 0x20 || bytes[index] == 0x09) { index += 1 }
            return index
        }

        static func trimOWS(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
            var slice = bytes
            while let first = slice.first, first == 0x20 || first == 0x09 { slice.removeFirst() }
            while let last = slice.last, last == 0x20 || last == 0x09 { slice.removeLast() }
            return slice
        }
    }
}
