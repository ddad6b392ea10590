/// A member name checked for extraction: relative, no `..` component, no
/// empty name. `.` components and repeated slashes are dropped (Qubes
/// writes `vm9/./private.img`, FORMAT §8.1). An empty component list means
/// the extraction root itself (`./`).
public struct MemberPath: Sendable, Equatable {
    public let components: [[UInt8]]

    /// Checks `raw`; absolute names and `..` are `.unsafe`, never stripped
    /// (GNU tar strips a leading `/` silently; we refuse, FORMAT §10).
    public init(_ raw: [UInt8], what: String = "member") throws(QBError) {
        let display = String(decoding: raw, as: UTF8.self)
        guard !raw.isEmpty else { throw QBError(.malformed, "empty \(what) name") }
        guard raw.first != 0x2F else {
            throw QBError(.unsafe, "refusing absolute \(what) name", subject: display, hint: "hostile or damaged archive")
        }
        var parts: [[UInt8]] = []
        for part in raw.split(separator: 0x2F, omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == 0x2E { continue }
            if part.count == 2 && part.first == 0x2E && part.last == 0x2E {
                throw QBError(.unsafe, "refusing \(what) name with a '..' component", subject: display, hint: "hostile or damaged archive")
            }
            parts.append(Array(part))
        }
        components = parts
    }

    /// The normalised name, components joined by `/`.
    public var string: String {
        components.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
    }
}
