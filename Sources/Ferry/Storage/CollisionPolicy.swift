import HTTPServer

/// What an upload does when its name is taken. One policy for every upload path (PUT, multipart, tus).
public enum CollisionPolicy: Sendable, Equatable {
    /// Refuse with 409 (the default).
    case refuse
    /// Replace the file atomically: the new content gets a new inode, so other hard links keep the old.
    case overwrite
    /// Store under the first free name of `name (1).ext`, `name (2).ext`, ...
    case rename

    /// The policy a request asks for with `?overwrite=1` or `?rename=1`.
    public static func from(query: [String: String]) throws(HTTPError) -> CollisionPolicy {
        func isSet(_ name: String) -> Bool {
            guard let value = query[name]?.lowercased() else { return false }
            return ["", "1", "true", "yes"].contains(value)
        }
        switch (isSet("overwrite"), isSet("rename")) {
        case (true, true):
            throw HTTPError.badRequest("conflicting_options", "Use either ?overwrite=1 or ?rename=1, not both.")
        case (true, false): return .overwrite
        case (false, true): return .rename
        case (false, false): return .refuse
        }
    }

    /// The `attempt`th alternative name for `name`: `report.pdf` → `report (1).pdf`; `archive.tar.gz` →
    /// `archive (1).tar.gz`; `.bashrc` → `.bashrc (1)`; `README` → `README (1)`.
    public static func alternative(to name: String, attempt: Int) -> String {
        let (stem, suffix) = splitExtension(name)
        return "\(stem) (\(attempt))\(suffix)"
    }

    static func splitExtension(_ name: String) -> (stem: String, suffix: String) {
        let characters = Array(name)
        guard let dot = characters.lastIndex(of: "."), dot > 0 else { return (name, "") }
        var cut = dot
        let stem = String(characters[..<dot])
        if stem.lowercased().hasSuffix(".tar"), dot - 4 > 0 { cut = dot - 4 }
        return (String(characters[..<cut]), String(characters[cut...]))
    }
}
