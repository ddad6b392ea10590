/// What a member is.
public enum TarEntryKind: Sendable, Equatable {
    case regular
    case hardLink
    case symbolicLink
    case characterDevice
    case blockDevice
    case directory
    case fifo
    /// A type this reader does not interpret (contiguous file `7` is read as
    /// regular); the flag byte is kept.
    case other(UInt8)
}

/// Which header dialect a member used, as far as the reader can tell.
public enum TarFormat: Sendable, Equatable {
    case v7, ustar, gnu, pax
}

/// One real member of an archive, with every PAX/GNU override applied.
/// Names are kept as raw bytes (file names are bytes on Linux); `name` is a
/// display form.
public struct TarEntry: Sendable {
    /// The member name as stored (after `L`, PAX `path`, ustar prefix,
    /// `GNU.sparse.name`); not validated — see `MemberPath` and `TarExtractor`.
    public var path: [UInt8]
    /// Target of a symbolic or hard link, as stored.
    public var linkTarget: [UInt8]
    public var kind: TarEntryKind
    /// Permission and special bits from the header (masking is the extractor's job).
    public var mode: UInt32
    public var uid: Int64
    public var gid: Int64
    public var userName: String
    public var groupName: String
    /// Modification time, whole seconds since the epoch.
    public var modificationTime: Int64
    /// Nanoseconds of the modification time (PAX `mtime` fractions), 0…999,999,999.
    public var modificationNanoseconds: Int
    /// Logical size: what `read(into:)` returns in total (realsize for sparse files).
    public var size: Int64
    /// Data bytes stored in the archive for this member (excludes a PAX 1.0 map).
    public var storedSize: Int64
    /// Set for sparse members; `nil` means one region covering the whole file.
    public var sparseMap: SparseMap?
    public var deviceMajor: Int64
    public var deviceMinor: Int64
    public var format: TarFormat
    /// The member's header blocks exactly as read — its PAX `x` and GNU
    /// `L`/`K` meta members, its own header, old-GNU sparse extension blocks
    /// and a PAX 1.0 sparse map — so the member can be passed on byte for
    /// byte by writing these, the stored data and zero padding.
    public var rawHeader: [UInt8]

    /// The name for display (invalid UTF-8 replaced).
    public var name: String { String(decoding: path, as: UTF8.self) }
    public var linkName: String { String(decoding: linkTarget, as: UTF8.self) }
}

/// A piece of a member's stored data and where it goes in the logical file.
public struct TarFragment: Sendable, Equatable {
    public var offset: Int64
    public var count: Int
}
