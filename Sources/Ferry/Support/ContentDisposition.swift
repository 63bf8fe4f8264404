import HTTPServer

/// `Content-Disposition` for a download (RFC 6266): an ASCII `filename` for old clients and the exact
/// name as UTF-8 in `filename*` (RFC 8187), which every current browser and curl prefer.
enum ContentDisposition {
    static func value(fileName: String, attachment: Bool) -> String {
        let kind = attachment ? "attachment" : "inline"
        return "\(kind); filename=\"\(asciiFallback(fileName))\"; filename*=UTF-8''\(PercentDecoding.encode(fileName))"
    }

    /// The name with anything that is not plain printable ASCII, and the characters that quoted strings
    /// or some clients treat specially (`"`, `\`, `%`), replaced by `_`.
    static func asciiFallback(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\" && scalar != "%" {
                out.unicodeScalars.append(scalar)
            } else {
                out += "_"
            }
        }
        return out
    }
}
