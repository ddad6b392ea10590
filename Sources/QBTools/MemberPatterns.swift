#if canImport(Glibc)
import Glibc
#endif

/// qb-untar's PATTERN arguments: each an exact name, a directory prefix or an
/// fnmatch(3) glob (where `*` also matches `/`, as in GNU tar); a leading
/// `./` is ignored on both sides. Remembers which patterns matched, since
/// one that never did is an error once the archive has been read.
struct MemberPatterns {
    /// As given, for the error naming one that never matched.
    private let given: [String]
    /// Without the leading `./` and trailing slashes.
    private let patterns: [String]
    private var matched: [Bool]

    init(_ given: [String]) {
        self.given = given
        patterns = given.map { raw in
            var pattern = raw.hasPrefix("./") ? String(raw.dropFirst(2)) : raw
            while pattern.count > 1 && pattern.hasSuffix("/") { pattern.removeLast() }
            return pattern
        }
        matched = [Bool](repeating: false, count: given.count)
    }

    /// Whether `rawName` is selected: always, without patterns.
    mutating func select(_ rawName: String) -> Bool {
        if patterns.isEmpty { return true }
        let name = rawName.hasPrefix("./") ? String(rawName.dropFirst(2)) : rawName
        var any = false
        for (i, pattern) in patterns.enumerated() {
            let hit = name == pattern || name.hasPrefix(pattern + "/")
                || fnmatch(pattern, name, 0) == 0 || fnmatch(pattern + "/*", name, 0) == 0
            if hit { matched[i] = true; any = true }
        }
        return any
    }

    /// The first pattern, as given, that no name has matched so far.
    var firstUnmatched: String? {
        zip(given, matched).first { !$0.1 }?.0
    }
}
