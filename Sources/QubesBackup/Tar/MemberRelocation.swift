/// Confines the members of an inner archive to one backed-up file's tree and
/// moves them under a new root: `vm3/private.img` restored as
/// `work/private.img` (FORMAT.md §8.3). A member outside `within` is refused,
/// never skipped: it can only come from a damaged or hostile archive.
public struct MemberRelocation: Sendable {
    /// Members must be this path or lie below it; nil accepts any.
    public let within: MemberPath?
    /// Leading components removed, as GNU tar's `--strip-components`.
    public let stripComponents: Int

    public init(within: String?, stripComponents: Int) throws(QBError) {
        self.within = try within.map { (w) throws(QBError) in try MemberPath(Array(w.utf8), what: "--within") }
        guard stripComponents >= 0 else { throw QBError(.usage, "--strip-components must not be negative") }
        self.stripComponents = stripComponents
    }

    public var isIdentity: Bool { within == nil && stripComponents == 0 }

    /// The entry as it is to be extracted, or nil when nothing of its name
    /// is left after stripping (the directory the tree was stored under).
    public func relocate(_ entry: TarEntry) throws(QBError) -> TarEntry? {
        if isIdentity { return entry }
        var moved = entry
        guard let path = try relocate(entry.path, member: entry.name) else { return nil }
        moved.path = path
        if entry.kind == .hardLink {
            guard let target = try relocate(entry.linkTarget, member: entry.name) else {
                throw QBError(.unsafe, "refusing hard link to the extraction directory", subject: entry.name)
            }
            moved.linkTarget = target
        }
        return moved
    }

    private func relocate(_ raw: [UInt8], member: String) throws(QBError) -> [UInt8]? {
        let path = try MemberPath(raw)
        if let within, !path.components.starts(with: within.components) {
            throw QBError(.unsafe, "member lies outside \(within.string)", subject: String(decoding: raw, as: UTF8.self),
                          hint: "an archive of \(within.string) holds nothing else; hostile or damaged backup")
        }
        let rest = path.components.dropFirst(stripComponents)
        if rest.isEmpty { return nil }
        return Array(rest.joined(separator: [0x2F]))
    }
}
