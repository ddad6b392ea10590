/// Bounds on everything an archive controls that would otherwise become an
/// allocation or a loop. Go's archive/tar and libarchive both cap special
/// headers at 1 MiB; the sparse-entry cap is FORMAT §12's.
public struct TarLimits: Sendable {
    /// Longest PAX `x`/`g` record block or GNU `L`/`K` long name, in bytes.
    public var maxSpecialHeaderSize: Int
    /// Most regions a sparse map may list, in any of its encodings.
    public var maxSparseEntries: Int
    /// Longest member name or link target after all overrides, in bytes.
    public var maxNameLength: Int
    /// Largest logical or stored member size accepted.
    public var maxMemberSize: Int64
    /// Most meta members (PAX, GNU long names) in front of one real member.
    public var maxMetaMembers: Int

    public init(maxSpecialHeaderSize: Int = 1 << 20, maxSparseEntries: Int = 1_000_000,
                maxNameLength: Int = 65_536, maxMemberSize: Int64 = 1 << 50, maxMetaMembers: Int = 16) {
        self.maxSpecialHeaderSize = maxSpecialHeaderSize
        self.maxSparseEntries = maxSparseEntries
        self.maxNameLength = maxNameLength
        self.maxMemberSize = maxMemberSize
        self.maxMetaMembers = maxMetaMembers
    }

    public static let `default` = TarLimits()
}
