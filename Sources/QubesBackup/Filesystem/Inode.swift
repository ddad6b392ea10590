/// What a directory entry or an inode's mode says a file is.
public enum FileKind: Sendable, Equatable {
    case regular, directory, symbolicLink, characterDevice, blockDevice, fifo, socket

    init?(mode: UInt16) {
        switch mode & 0xF000 {
        case 0x8000: self = .regular
        case 0x4000: self = .directory
        case 0xA000: self = .symbolicLink
        case 0x2000: self = .characterDevice
        case 0x6000: self = .blockDevice
        case 0x1000: self = .fifo
        case 0xC000: self = .socket
        default: return nil
        }
    }
}

/// One inode, parsed from its on-disk bytes. Sizes and counts are checked
/// against what the format allows before any caller can use them.
public struct Inode: Sendable {
    public let number: UInt32
    public let mode: UInt16
    public let kind: FileKind
    public let uid: UInt32
    public let gid: UInt32
    public let size: UInt64
    public let linksCount: UInt16
    public let flags: UInt32
    public let modificationTime: Int64
    public let modificationNanoseconds: Int
    public let generation: UInt32
    /// 512-byte sectors (or filesystem blocks with huge_file's flag) in use,
    /// extended-attribute block included.
    public let blocks: UInt64
    public let extendedAttributeBlock: UInt64
    /// The 60 bytes of i_block: block map, extent root, inline data or a
    /// fast symlink's target.
    public let blockArea: [UInt8]
    /// In-inode extended attributes (after i_extra_isize), where inline
    /// data keeps the rest of its bytes; empty for 128-byte inodes.
    let extraArea: [UInt8]
    let raw: [UInt8]
    /// With metadata_csum, the seed of every checksum of this inode's own
    /// structures (the inode, its extent and directory blocks): crc32c of
    /// its number and generation over the filesystem's seed.
    let checksumSeed: UInt32

    static let extentsFlag: UInt32 = 0x80000
    static let inlineDataFlag: UInt32 = 0x1000_0000
    static let encryptedFlag: UInt32 = 0x800
    static let indexFlag: UInt32 = 0x1000
    static let hugeFileFlag: UInt32 = 0x40000
    static let verityFlag: UInt32 = 0x100000

    public var usesExtents: Bool { flags & Self.extentsFlag != 0 }
    public var hasInlineData: Bool { flags & Self.inlineDataFlag != 0 }
    public var isEncrypted: Bool { flags & Self.encryptedFlag != 0 }
    public var permissions: UInt32 { UInt32(mode & 0o7777) }

    /// Major and minor number of a device node, in either of the two
    /// encodings the kernel writes into i_block.
    public var device: (major: UInt32, minor: UInt32) {
        let old = blockArea.le32(0), new = blockArea.le32(4)
        if old != 0 { return ((old >> 8) & 0xFF, old & 0xFF) }
        return ((new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00))
    }

    /// Parses and checks inode `number` from `raw` (one inode-size record).
    /// `verify` says whether a metadata_csum mismatch is an error.
    init(number: UInt32, raw: [UInt8], superblock sb: Superblock, verify: Bool) throws(QBError) {
        self.number = number
        self.raw = raw
        mode = raw.le16(0x00)
        guard let kind = FileKind(mode: mode) else {
            throw QBError(.malformed, "inode \(number) has an unknown file type (mode 0o\(String(mode, radix: 8)))")
        }
        self.kind = kind
        linksCount = raw.le16(0x1A)
        flags = raw.le32(0x20)
        generation = raw.le32(0x64)
        var extraSize = 0
        if raw.count > 128 {
            extraSize = Int(raw.le16(0x80))
            guard extraSize % 4 == 0, 128 + extraSize <= raw.count else {
                throw QBError(.malformed, "inode \(number) has an impossible extra size \(extraSize)")
            }
        }
        let hasChecksums = sb.features.readOnlyCompatible.contains(.metadataChecksum)
        checksumSeed = hasChecksums ? CRC32C.update(CRC32C.update(sb.checksumSeed, littleEndianBytes(number)), littleEndianBytes(generation)) : 0
        if hasChecksums && verify {
            let seed = checksumSeed
            let hasHigh = extraSize >= 4
            var copy = raw
            copy[0x7C] = 0; copy[0x7D] = 0
            if hasHigh { copy[0x82] = 0; copy[0x83] = 0 }
            let crc = CRC32C.update(seed, copy)
            let stored = UInt32(raw.le16(0x7C)) | (hasHigh ? UInt32(raw.le16(0x82)) << 16 : 0)
            let computed = hasHigh ? crc : crc & 0xFFFF
            guard computed == stored else {
                throw QBError(.malformed, "inode \(number) checksum does not match", hint: "the inode is damaged")
            }
        }
        uid = UInt32(raw.le16(0x02)) | UInt32(raw.le16(0x78)) << 16
        gid = UInt32(raw.le16(0x18)) | UInt32(raw.le16(0x7A)) << 16
        size = UInt64(raw.le32(0x04)) | UInt64(raw.le32(0x6C)) << 32
        var seconds = Int64(Int32(bitPattern: raw.le32(0x10)))
        var nanoseconds = 0
        if extraSize >= 0x88 + 4 - 128 {
            // The low two bits extend the seconds past 2038; the rest are nanoseconds.
            let extra = raw.le32(0x88)
            seconds += Int64(extra & 3) << 32
            nanoseconds = Int(min(extra >> 2, 999_999_999))
        }
        modificationTime = seconds
        modificationNanoseconds = nanoseconds
        let blocksLow = UInt64(raw.le32(0x1C)) | UInt64(raw.le16(0x74)) << 32
        blocks = flags & Self.hugeFileFlag != 0 ? blocksLow.multipliedReportingOverflow(by: UInt64(sb.blockSize / 512)).partialValue : blocksLow
        extendedAttributeBlock = UInt64(raw.le32(0x68)) | UInt64(raw.le16(0x76)) << 32
        blockArea = Array(raw[0x28..<0x64])
        extraArea = raw.count > 128 + extraSize ? Array(raw[(128 + extraSize)...]) : []

        // The largest file the format can describe: 2^32 logical blocks
        // (extents and block maps alike address blocks with 32 bits).
        let maximum = UInt64(sb.blockSize) << 32
        guard size <= maximum else {
            throw QBError(.malformed, "inode \(number) claims \(size) bytes, more than a file can hold (\(maximum))")
        }
    }
}
