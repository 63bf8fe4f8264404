import Glibc

/// HTTP dates (RFC 9110 §5.6.7): formatting as IMF-fixdate and parsing of the three accepted forms.
///
/// The calendar arithmetic is done here (proleptic Gregorian, UTC), so neither the locale nor the time zone of
/// the process can change the result.
public enum HTTPDate {
    /// The earliest instant with a four-digit year: `Sat, 01 Jan 0000 00:00:00 GMT`.
    static let earliest: Int64 = -62_167_219_200
    /// The latest instant with a four-digit year: `Fri, 31 Dec 9999 23:59:59 GMT`.
    static let latest: Int64 = 253_402_300_799

    private static let dayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let longDayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    ///
    /// Instants before year 0000 or after year 9999 are clamped to that range, since the format has a
    /// four-digit year.
    public static func format(_ secondsSinceEpoch: Int64) -> String {
        let seconds = min(max(secondsSinceEpoch, earliest), latest)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civil(fromDays: days)
        let weekday = Int(floorDivide(days + 4, 7).remainder)  // 1970-01-01 was a Thursday.
        return dayNames[weekday] + ", " + pad(day, 2) + " " + monthNames[month - 1] + " " + pad(year, 4) + " "
            + pad(Int(secondOfDay / 3600), 2) + ":" + pad(Int(secondOfDay / 60 % 60), 2) + ":"
            + pad(Int(secondOfDay % 60), 2) + " GMT"
    }

    /// Parses IMF-fixdate, obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
    /// (`Sun Nov  6 08:49:37 1994`) forms; nil when invalid.
    ///
    /// Names are case-sensitive, as in RFC 9110's grammar; the day name must be a real one but need not agree
    /// with the date. A second of 60 (a leap second) is accepted and counts as the next minute's first second.
    /// A two-digit RFC 850 year is read as the year within 50 years of the current one.
    public static func parse(_ text: String) -> Int64? {
        parse(text, now: Int64(time(nil)))
    }

    /// ``parse(_:)`` with the current time given, which only RFC 850's two-digit years depend on.
    static func parse(_ text: String, now: Int64) -> Int64? {
        var bytes = Array(text.utf8)[...]
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes.removeFirst() }
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        let b = Array(bytes)
        guard b.count >= 24 else { return nil }
        if b[3] == UInt8(ascii: ",") { return parseIMFFixdate(b) }
        if b[3] == UInt8(ascii: " ") { return parseAsctime(b) }
        return parseRFC850(b, now: now)
    }

    // MARK: - The three forms

    /// `Sun, 06 Nov 1994 08:49:37 GMT`
    private static func parseIMFFixdate(_ b: [UInt8]) -> Int64? {
        guard b.count == 29, dayNames.contains(string(b[0..<3])),
            matches(b, at: 3, ", "), let day = number(b[5..<7]), b[7] == UInt8(ascii: " "),
            let month = month(b[8..<11]), b[11] == UInt8(ascii: " "), let year = number(b[12..<16]),
            b[16] == UInt8(ascii: " "), let time = timeOfDay(b[17..<25]), matches(b, at: 25, " GMT")
        else { return nil }
        return instant(year: year, month: month, day: day, secondOfDay: time)
    }

    /// `Sunday, 06-Nov-94 08:49:37 GMT`
    private static func parseRFC850(_ b: [UInt8], now: Int64) -> Int64? {
        guard let comma = b.firstIndex(of: UInt8(ascii: ",")), longDayNames.contains(string(b[..<comma])),
            b.count == comma + 24, matches(b, at: comma, ", "),
            let day = number(b[(comma + 2)..<(comma + 4)]), b[comma + 4] == UInt8(ascii: "-"),
            let month = month(b[(comma + 5)..<(comma + 8)]), b[comma + 8] == UInt8(ascii: "-"),
            let shortYear = number(b[(comma + 9)..<(comma + 11)]), b[comma + 11] == UInt8(ascii: " "),
            let time = timeOfDay(b[(comma + 12)..<(comma + 20)]), matches(b, at: comma + 20, " GMT")
        else { return nil }
        // RFC 9110 §5.6.7: a year that appears more than 50 years in the future is the most recent past year
        // with the same last two digits.
        let currentYear = civil(fromDays: floorDivide(now, 86_400).quotient).year
        var year = currentYear - currentYear % 100 + shortYear
        if year > currentYear + 50 {
            year -= 100
        } else if year <= currentYear - 50 {
            year += 100
        }
        return instant(year: year, month: month, day: day, secondOfDay: time)
    }

    /// `Sun Nov  6 08:49:37 1994` (the day is two digits or a space and a digit)
    private static func parseAsctime(_ b: [UInt8]) -> Int64? {
        guard b.count == 24, dayNames.contains(string(b[0..<3])), b[3] == UInt8(ascii: " "),
            let month = month(b[4..<7]), b[7] == UInt8(ascii: " "),
            let day = b[8] == UInt8(ascii: " ") ? number(b[9..<10]) : number(b[8..<10]),
            b[10] == UInt8(ascii: " "), let time = timeOfDay(b[11..<19]), b[19] == UInt8(ascii: " "),
            let year = number(b[20..<24])
        else { return nil }
        return instant(year: year, month: month, day: day, secondOfDay: time)
    }

    // MARK: - Pieces

    private static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    private static func matches(_ b: [UInt8], at index: Int, _ literal: String) -> Bool {
        let expected = Array(literal.utf8)
        guard index >= 0, index + expected.count <= b.count else { return false }
        return b[index..<(index + expected.count)].elementsEqual(expected)
    }

    /// A fixed-width run of ASCII digits.
    private static func number(_ digits: ArraySlice<UInt8>) -> Int? {
        var value = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// A month name as 1...12.
    private static func month(_ name: ArraySlice<UInt8>) -> Int? {
        monthNames.firstIndex(of: string(name)).map { $0 + 1 }
    }

    /// `HH:MM:SS` as seconds since midnight.
    private static func timeOfDay(_ b: ArraySlice<UInt8>) -> Int? {
        let s = b.startIndex
        guard b.count == 8, b[s + 2] == UInt8(ascii: ":"), b[s + 5] == UInt8(ascii: ":"),
            let hour = number(b[s..<(s + 2)]), let minute = number(b[(s + 3)..<(s + 5)]),
            let second = number(b[(s + 6)..<(s + 8)]), hour <= 23, minute <= 59, second <= 60
        else { return nil }
        return hour * 3600 + minute * 60 + second
    }

    /// Seconds since the epoch, or nil for a day the month does not have.
    private static func instant(year: Int, month: Int, day: Int, secondOfDay: Int) -> Int64? {
        guard day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        return days(fromCivil: year, month, day) * 86_400 + Int64(secondOfDay)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// Division rounding towards negative infinity, with a remainder in `0..<divisor`.
    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        var quotient = value / divisor
        var remainder = value % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = floorDivide(y, 400).quotient
        let yearOfEra = y - era * 400
        let shiftedMonth = Int64(month > 2 ? month - 3 : month + 9)
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The proleptic Gregorian date of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = floorDivide(z, 146_097).quotient
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }
}
