/// The ext2/3/4 superblock (1024 bytes at byte 1024 of the filesystem),
/// parsed and checked before anything else trusts it. Field offsets follow
/// the kernel's Documentation/filesystems/ext4/super.rst and e2fsprogs'
/// `struct ext2_super_block`.
public struct Superblock: Sendable {
    public static let offset: Int64 = 1024
    public static let size = 1024
    static let magic: UInt16 = 0xEF53

    public let raw: [UInt8]
    public let blockSize: Int
    public let blocksCount: UInt64
    public let inodesCount: UInt32
    public let firstDataBlock: UInt32
    public let blocksPerGroup: UInt32
    /// Blocks per allocation cluster: 1 unless bigalloc, whose bitmaps,
    /// free counts and group sizes count clusters. Extents still map blocks.
    public let clusterRatio: UInt32
    /// Clusters per group: what one block bitmap covers.
    public let clustersPerGroup: UInt32
    public let inodesPerGroup: UInt32
    public let inodeSize: Int
    public let firstInode: UInt32
    public let revision: UInt32
    public let state: UInt16
    public let features: FeatureSet
    public let uuid: [UInt8]
    public let label: [UInt8]
    public let lastMounted: [UInt8]
    public let descriptorSize: Int
    public let firstMetaBlockGroup: UInt32
    public let journalInode: UInt32
    public let journalUUID: [UInt8]
    public let orphanFileInode: UInt32
    public let lastOrphan: UInt32
    public let modificationTime: Int64
    public let writeTime: Int64
    public let creationTime: Int64
    public let reservedGDTBlocks: UInt16
    /// s_backup_bgs: with sparse_super2, the only two groups (besides 0)
    /// that hold a backup superblock and descriptor table; 0 means none.
    public let backupGroups: (UInt32, UInt32)
    /// s_journal_dev: the device number of an external journal.
    public let journalDevice: UInt32
    public let minimumExtraInodeSize: UInt16
    public let logGroupsPerFlex: UInt8
    public let encoding: UInt16
    /// Seed of every metadata checksum: `s_checksum_seed` with
    /// metadata_csum_seed (the UUID may then change without rewriting
    /// checksums), otherwise crc32c of the UUID.
    public let checksumSeed: UInt32
    /// Whether the superblock's own checksum matched (always true without metadata_csum).
    public let checksumMatches: Bool

    /// Bytes in blocks that are in use (data and metadata).
    public var usedBytes: Int64 {
        let is64 = features.incompatible.contains(.bit64)
        let free = UInt64(raw.le32(0x0C)) | (is64 ? UInt64(raw.le32(0x158)) << 32 : 0)
        return Int64(blocksCount - min(free, blocksCount)) * Int64(blockSize)
    }

    public var groupCount: UInt32 {
        UInt32((blocksCount - UInt64(firstDataBlock) + UInt64(blocksPerGroup) - 1) / UInt64(blocksPerGroup))
    }

    /// The block that holds the superblock (byte 1024): 1 with 1 KiB
    /// blocks, whatever s_first_data_block says (bigalloc makes it 0), else 0.
    public var superblockBlock: UInt64 { blockSize == 1024 ? 1 : 0 }

    /// Group descriptors in one block.
    var descriptorsPerBlock: UInt32 { UInt32(blockSize / descriptorSize) }

    /// Blocks of group descriptors: one entry per group.
    var descriptorBlockCount: UInt32 { (groupCount + descriptorsPerBlock - 1) / descriptorsPerBlock }

    func firstBlock(ofGroup group: UInt32) -> UInt64 {
        UInt64(firstDataBlock) + UInt64(group) * UInt64(blocksPerGroup)
    }

    /// Whether `group` starts with a copy of the superblock (and, outside
    /// meta_bg, of the descriptor table), as e2fsprogs' ext2fs_bg_has_super
    /// and the kernel's ext4_bg_has_super decide: sparse_super2 names its two
    /// backup groups; sparse_super keeps groups 0, 1 and the powers of 3, 5
    /// and 7; without either, every group has one.
    public func hasSuperblockCopy(_ group: UInt32) -> Bool {
        if group == 0 { return true }
        if features.compatible.contains(.sparseSuper2) {
            return group == backupGroups.0 || group == backupGroups.1
        }
        if group == 1 || !features.readOnlyCompatible.contains(.sparseSuper) { return true }
        if group & 1 == 0 { return false }
        for base: UInt64 in [3, 5, 7] {
            var power = base
            while power < UInt64(group) { power *= base }
            if power == UInt64(group) { return true }
        }
        return false
    }

    /// Where descriptor block `index` lives (the kernel's descriptor_loc):
    /// after the superblock outside meta_bg; with meta_bg, from block group
    /// s_first_meta_bg on, in the first group of the groups it describes,
    /// after that group's superblock copy if it has one.
    func descriptorBlockLocation(_ index: UInt32) -> UInt64 {
        guard features.incompatible.contains(.metaBlockGroups), index >= firstMetaBlockGroup else {
            return superblockBlock + 1 + UInt64(index)
        }
        let group = index * descriptorsPerBlock
        var location = firstBlock(ofGroup: group) + (hasSuperblockCopy(group) ? 1 : 0)
        // 1 KiB blocks with s_first_data_block 0 (bigalloc): group 0's first
        // block is block 0, but the superblock is in block 1.
        if blockSize == 1024 && index == 0 && firstDataBlock == 0 { location += 1 }
        return location
    }

    /// Parses `raw` (exactly 1024 bytes). Refuses what is not an ext2/3/4
    /// superblock, geometry that cannot be right, and incompatible features
    /// this reader does not understand.
    public init(_ raw: [UInt8], filesystemBytes: Int64) throws(QBError) {
        guard raw.count == Self.size else { throw QBError(.truncated, "superblock is cut short") }
        guard raw.le16(0x38) == Self.magic else {
            throw QBError(.malformed, "no ext2/3/4 filesystem (bad superblock magic)",
                          hint: "if this is a whole disk, see the partitions with --info and choose one with --partition")
        }
        self.raw = raw
        let logBlockSize = raw.le32(0x18)
        // 1 KiB to 64 KiB: the sizes the kernel mounts.
        guard logBlockSize <= 6 else { throw QBError(.malformed, "superblock: block size 2^\(10 + UInt64(logBlockSize)) is out of range") }
        blockSize = 1024 << Int(logBlockSize)
        features = FeatureSet(compatible: raw.le32(0x5C), incompatible: raw.le32(0x60), readOnlyCompatible: raw.le32(0x64))
        let is64 = features.incompatible.contains(.bit64)
        blocksCount = UInt64(raw.le32(0x04)) | (is64 ? UInt64(raw.le32(0x150)) << 32 : 0)
        inodesCount = raw.le32(0x00)
        firstDataBlock = raw.le32(0x14)
        blocksPerGroup = raw.le32(0x20)
        inodesPerGroup = raw.le32(0x28)
        revision = raw.le32(0x4C)
        inodeSize = revision == 0 ? 128 : Int(raw.le16(0x58))
        firstInode = revision == 0 ? 11 : raw.le32(0x54)
        state = raw.le16(0x3A)
        uuid = Array(raw[0x68..<0x78])
        label = raw.cString(0x78..<0x88)
        lastMounted = raw.cString(0x88..<0xC8)
        descriptorSize = is64 ? Int(raw.le16(0xFE)) : 32
        firstMetaBlockGroup = raw.le32(0x104)
        journalInode = raw.le32(0xE0)
        journalUUID = Array(raw[0xD0..<0xE0])
        lastOrphan = raw.le32(0xE8)
        orphanFileInode = raw.le32(0x280)
        modificationTime = Int64(raw.le32(0x2C)) | Int64(raw[0x275]) << 32
        writeTime = Int64(raw.le32(0x30)) | Int64(raw[0x274]) << 32
        creationTime = Int64(raw.le32(0x108)) | Int64(raw[0x276]) << 32
        reservedGDTBlocks = raw.le16(0xCE)
        backupGroups = (raw.le32(0x24C), raw.le32(0x250))
        journalDevice = raw.le32(0xE4)
        minimumExtraInodeSize = raw.le16(0x15C)
        logGroupsPerFlex = raw[0x174]
        encoding = raw.le16(0x27C)

        if features.readOnlyCompatible.contains(.metadataChecksum) {
            checksumMatches = CRC32C.update(~0, raw[0..<0x3FC]) == raw.le32(0x3FC)
            checksumSeed = features.incompatible.contains(.checksumSeed) ? raw.le32(0x270) : CRC32C.update(~0, uuid)
        } else {
            checksumMatches = true
            checksumSeed = 0
        }

        // Geometry: every later computation divides or multiplies by these.
        // A block bitmap covers one group, one bit per cluster.
        if features.readOnlyCompatible.contains(.bigalloc) {
            let logClusterSize = raw.le32(0x1C)
            // The kernel's limit: clusters of at most 2^30 bytes.
            guard logClusterSize >= logBlockSize, logClusterSize <= 20 else {
                throw QBError(.malformed, "superblock: cluster size 2^\(10 + UInt64(logClusterSize)) does not suit \(blockSize)-byte blocks")
            }
            clusterRatio = 1 << (logClusterSize - logBlockSize)
            clustersPerGroup = raw.le32(0x24)
            guard clustersPerGroup >= 8, clustersPerGroup <= UInt32(blockSize) * 8 else {
                throw QBError(.malformed, "superblock: \(clustersPerGroup) clusters per group do not fit a block bitmap")
            }
            guard UInt64(blocksPerGroup) == UInt64(clustersPerGroup) * UInt64(clusterRatio) else {
                throw QBError(.malformed, "superblock: \(blocksPerGroup) blocks per group are not \(clustersPerGroup) clusters of \(clusterRatio) blocks")
            }
        } else {
            clusterRatio = 1
            clustersPerGroup = blocksPerGroup
            guard blocksPerGroup >= 8, blocksPerGroup <= UInt32(blockSize) * 8 else {
                throw QBError(.malformed, "superblock: \(blocksPerGroup) blocks per group do not fit a block bitmap")
            }
        }
        guard inodesPerGroup >= 1, inodesPerGroup <= UInt32(blockSize) * 8 else {
            throw QBError(.malformed, "superblock: \(inodesPerGroup) inodes per group do not fit an inode bitmap")
        }
        guard inodeSize >= 128, inodeSize <= blockSize, inodeSize & (inodeSize - 1) == 0 else {
            throw QBError(.malformed, "superblock: inode size \(inodeSize) is not a power of two between 128 and the block size")
        }
        guard firstDataBlock == (blockSize == 1024 ? 1 : 0) || firstDataBlock == 0 else {
            throw QBError(.malformed, "superblock: first data block \(firstDataBlock) is impossible for \(blockSize)-byte blocks")
        }
        guard blocksCount > UInt64(firstDataBlock) else { throw QBError(.malformed, "superblock: no blocks") }
        let bytes = blocksCount.multipliedReportingOverflow(by: UInt64(blockSize))
        guard !bytes.overflow, bytes.partialValue <= UInt64(filesystemBytes) else {
            throw QBError(.truncated, "the filesystem has \(blocksCount) blocks of \(blockSize) bytes but the image holds only \(filesystemBytes) bytes",
                          hint: "the image is cut short, or this is not the filesystem's start")
        }
        if is64 {
            guard descriptorSize >= 64, descriptorSize <= 1024, descriptorSize & (descriptorSize - 1) == 0 else {
                throw QBError(.malformed, "superblock: group descriptor size \(descriptorSize) is invalid")
            }
        }
        let groups = (blocksCount - UInt64(firstDataBlock) + UInt64(blocksPerGroup) - 1) / UInt64(blocksPerGroup)
        guard groups <= UInt64(UInt32.max), UInt64(inodesPerGroup) * groups >= UInt64(inodesCount) else {
            throw QBError(.malformed, "superblock: \(inodesCount) inodes do not fit \(groups) groups of \(inodesPerGroup)")
        }
        if features.incompatible.contains(.metaBlockGroups) {
            // The kernel refuses the same: descriptors before the first
            // meta group are in the table after the superblock.
            let descriptorBlocks = (groups + UInt64(blockSize / descriptorSize) - 1) / UInt64(blockSize / descriptorSize)
            guard UInt64(firstMetaBlockGroup) <= descriptorBlocks else {
                throw QBError(.malformed, "superblock: first meta block group \(firstMetaBlockGroup) is past the \(descriptorBlocks) descriptor blocks")
            }
        }
        guard firstInode >= 11 || revision == 0, firstInode <= inodesCount else {
            throw QBError(.malformed, "superblock: first non-reserved inode \(firstInode) is invalid")
        }
        let unknown = features.incompatible.subtracting(FeatureSet.Incompatible.understood)
        if !unknown.isEmpty {
            throw QBError(.unsupported, "filesystem uses incompatible features this reader does not know: \(unknown.names.joined(separator: ", "))",
                          hint: "reading it without them would give wrong contents")
        }
        if features.incompatible.contains(.journalDevice) {
            throw QBError(.unsupported, "this is an external journal device, not a filesystem")
        }
    }
}

/// The three feature words, with names for the messages and `--info`.
public struct FeatureSet: Sendable {
    public var compatible: Compatible
    public var incompatible: Incompatible
    public var readOnlyCompatible: ReadOnlyCompatible

    init(compatible: UInt32, incompatible: UInt32, readOnlyCompatible: UInt32) {
        self.compatible = Compatible(rawValue: compatible)
        self.incompatible = Incompatible(rawValue: incompatible)
        self.readOnlyCompatible = ReadOnlyCompatible(rawValue: readOnlyCompatible)
    }

    /// Every feature set, by its mke2fs name, unknown bits as `compat_0x…`.
    public var names: [String] { compatible.names + incompatible.names + readOnlyCompatible.names }

    public struct Compatible: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let hasJournal = Self(rawValue: 0x4)
        public static let sparseSuper2 = Self(rawValue: 0x200)
        public static let fastCommit = Self(rawValue: 0x400)
        public static let orphanFile = Self(rawValue: 0x1000)
        static let table: [(UInt32, String)] = [
            (0x1, "dir_prealloc"), (0x2, "imagic_inodes"), (0x4, "has_journal"), (0x8, "ext_attr"), (0x10, "resize_inode"),
            (0x20, "dir_index"), (0x40, "lazy_bg"), (0x100, "snapshot_bitmap"), (0x200, "sparse_super2"),
            (0x400, "fast_commit"), (0x800, "stable_inodes"), (0x1000, "orphan_file"),
        ]
        public var names: [String] { featureNames(rawValue, Self.table, "compat") }
    }

    public struct Incompatible: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let compression = Self(rawValue: 0x1)
        public static let fileType = Self(rawValue: 0x2)
        public static let needsRecovery = Self(rawValue: 0x4)
        public static let journalDevice = Self(rawValue: 0x8)
        public static let metaBlockGroups = Self(rawValue: 0x10)
        public static let extents = Self(rawValue: 0x40)
        public static let bit64 = Self(rawValue: 0x80)
        public static let multipleMountProtection = Self(rawValue: 0x100)
        public static let flexibleBlockGroups = Self(rawValue: 0x200)
        public static let extendedAttributeInodes = Self(rawValue: 0x400)
        public static let directoryData = Self(rawValue: 0x1000)
        public static let checksumSeed = Self(rawValue: 0x2000)
        public static let largeDirectories = Self(rawValue: 0x4000)
        public static let inlineData = Self(rawValue: 0x8000)
        public static let encryption = Self(rawValue: 0x10000)
        public static let casefold = Self(rawValue: 0x20000)
        /// What this reader reads correctly. Compression (never in
        /// mainline) and dirdata (Lustre) change how data or names are
        /// stored; anything unknown may too.
        static let understood: Self = [.fileType, .needsRecovery, .journalDevice, .metaBlockGroups, .extents, .bit64,
                                       .multipleMountProtection, .flexibleBlockGroups, .extendedAttributeInodes,
                                       .checksumSeed, .largeDirectories, .inlineData, .encryption, .casefold]
        static let table: [(UInt32, String)] = [
            (0x1, "compression"), (0x2, "filetype"), (0x4, "needs_recovery"), (0x8, "journal_dev"), (0x10, "meta_bg"),
            (0x40, "extent"), (0x80, "64bit"), (0x100, "mmp"), (0x200, "flex_bg"), (0x400, "ea_inode"),
            (0x1000, "dirdata"), (0x2000, "metadata_csum_seed"), (0x4000, "large_dir"), (0x8000, "inline_data"),
            (0x10000, "encrypt"), (0x20000, "casefold"),
        ]
        public var names: [String] { featureNames(rawValue, Self.table, "incompat") }
    }

    public struct ReadOnlyCompatible: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let sparseSuper = Self(rawValue: 0x1)
        public static let hugeFile = Self(rawValue: 0x8)
        public static let bigalloc = Self(rawValue: 0x200)
        public static let sharedBlocks = Self(rawValue: 0x4000)
        public static let groupDescriptorChecksum = Self(rawValue: 0x10)
        public static let metadataChecksum = Self(rawValue: 0x400)
        static let table: [(UInt32, String)] = [
            (0x1, "sparse_super"), (0x2, "large_file"), (0x4, "btree_dir"), (0x8, "huge_file"), (0x10, "uninit_bg"),
            (0x20, "dir_nlink"), (0x40, "extra_isize"), (0x80, "snapshot"), (0x100, "quota"), (0x200, "bigalloc"),
            (0x400, "metadata_csum"), (0x800, "replica"), (0x1000, "read-only"), (0x2000, "project"),
            (0x4000, "shared_blocks"), (0x8000, "verity"), (0x10000, "orphan_present"),
        ]
        public var names: [String] { featureNames(rawValue, Self.table, "ro_compat") }
    }
}

private func featureNames(_ bits: UInt32, _ table: [(UInt32, String)], _ prefix: String) -> [String] {
    var names: [String] = []
    var rest = bits
    for (bit, name) in table where bits & bit != 0 {
        names.append(name)
        rest &= ~bit
    }
    for i in 0..<32 where rest & (1 << i) != 0 { names.append("\(prefix)_0x\(String(1 << i, radix: 16))") }
    return names
}
