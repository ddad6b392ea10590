/// One 512-byte tar header block and the layout of its fields: the only
/// place that knows where a field sits, for the reader and the writer alike.
/// Numbers are decoded by `TarNumeric`; the reader decides which fields
/// apply (a PAX record or a GNU long name overrides the header's own).
struct TarHeaderBlock {
    /// Every header, extension and data block is this long; member data is
    /// padded to a multiple of it.
    static let size = 512

    /// Byte ranges of the fields. The v7 fields come first, ustar added
    /// magic to prefix, and old GNU headers reuse the ustar prefix area for
    /// their own fields (multi-volume offset, sparse map) — the magic says
    /// which reading applies.
    enum Field {
        static let name = 0..<100
        static let mode = 100..<108
        static let uid = 108..<116
        static let gid = 116..<124
        static let size = 124..<136
        static let mtime = 136..<148
        static let checksum = 148..<156
        static let typeflag = 156
        static let linkname = 157..<257
        static let magic = 257..<263
        static let version = 263..<265
        static let uname = 265..<297
        static let gname = 297..<329
        static let devmajor = 329..<337
        static let devminor = 337..<345
        static let prefix = 345..<500

        // Old GNU only, inside what ustar calls the prefix.
        /// Where an `M` continuation's data starts within the whole member.
        static let gnuOffset = 369..<381
        /// The first `gnuSparseEntryCount` entries of an `S` member's map.
        static let gnuSparseEntries = 386..<482
        static let gnuSparseEntryCount = 4
        /// Non-zero when extension blocks with more entries follow the header.
        static let gnuIsExtended = 482
        /// The logical size of an `S` member (`size` counts the stored data).
        static let gnuRealSize = 483..<495
    }

    /// The block that follows an old GNU sparse header (or another such
    /// block) while `isextended` is set: more map entries, nothing else.
    enum GNUSparseExtension {
        static let entries = 0..<504
        static let entryCount = 21
        static let isExtended = 504
    }

    /// One entry of an old GNU sparse map: offset, then length, 12 octal
    /// bytes each.
    enum GNUSparseEntry {
        static let size = 24
        static let offset = 0..<12
        static let length = 12..<24
    }

    /// POSIX ustar magic, followed by version "00".
    static let ustarMagic: [UInt8] = Array("ustar\u{0}".utf8)
    static let ustarVersion: [UInt8] = Array("00".utf8)
    /// Old GNU tar writes "ustar  \0" across magic and version.
    static let gnuMagicAndVersion: [UInt8] = Array("ustar  \u{0}".utf8)

    let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        precondition(bytes.count == Self.size)
        self.bytes = bytes
    }

    var isAllZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// Throws unless the stored checksum matches the block's bytes.
    func verifyChecksum() throws(QBError) {
        guard try TarNumeric.checksumMatches(bytes) else {
            throw QBError(.malformed, "header checksum mismatch", hint: "not a tar archive, or corrupt")
        }
    }

    /// Which dialect the magic field names (PAX is known only from the
    /// extended headers in front of the block, so never returned here).
    var dialect: TarFormat {
        let magicAndVersion = Field.magic.lowerBound..<Field.version.upperBound
        if bytes[magicAndVersion].elementsEqual(Self.gnuMagicAndVersion) { return .gnu }
        if bytes[Field.magic].elementsEqual(Self.ustarMagic) { return .ustar }
        return .v7
    }

    var typeflag: UInt8 { bytes[Field.typeflag] }

    /// What the type flag says the member is. GNU's contiguous file `7` and
    /// sparse `S` hold regular files, its dump directory `D` a directory;
    /// meta types (`x`, `g`, `L`, `K`, `V`, `M`) are the reader's business
    /// before a member is built.
    var kind: TarEntryKind {
        let type = typeflag
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "S"): return .regular
        case UInt8(ascii: "1"): return .hardLink
        case UInt8(ascii: "2"): return .symbolicLink
        case UInt8(ascii: "3"): return .characterDevice
        case UInt8(ascii: "4"): return .blockDevice
        case UInt8(ascii: "5"), UInt8(ascii: "D"): return .directory
        case UInt8(ascii: "6"): return .fifo
        default: return .other(type)
        }
    }

    // Text fields, up to their first NUL.
    var name: [UInt8] { Self.cString(bytes[Field.name]) }
    var linkname: [UInt8] { Self.cString(bytes[Field.linkname]) }
    var uname: [UInt8] { Self.cString(bytes[Field.uname]) }
    var gname: [UInt8] { Self.cString(bytes[Field.gname]) }
    var prefix: [UInt8] { Self.cString(bytes[Field.prefix]) }

    // Numeric fields; the names given to `TarNumeric` appear in its errors.
    var mode: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.mode], what: "mode") } }
    var uid: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.uid], what: "uid") } }
    var gid: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.gid], what: "gid") } }
    var size: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.size], what: "size") } }
    var mtime: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.mtime], what: "mtime") } }
    var devmajor: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.devmajor], what: "device major") } }
    var devminor: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.devminor], what: "device minor") } }
    var gnuOffset: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.gnuOffset], what: "offset") } }
    var gnuRealSize: Int64 { get throws(QBError) { try TarNumeric.parse(bytes[Field.gnuRealSize], what: "real size") } }

    var gnuSparseEntries: ArraySlice<UInt8> { bytes[Field.gnuSparseEntries] }
    var gnuIsExtended: Bool { bytes[Field.gnuIsExtended] != 0 }

    /// The bytes of `field` up to its first NUL (all of it when it has none).
    static func cString(_ field: ArraySlice<UInt8>) -> [UInt8] {
        if let nul = field.firstIndex(of: 0) { return Array(field[field.startIndex..<nul]) }
        return Array(field)
    }

    /// Zero bytes after `dataSize` bytes of member data, up to the next
    /// block boundary.
    static func padding(after dataSize: Int64) -> Int {
        Int((Int64(size) - dataSize % Int64(size)) % Int64(size))
    }
}
