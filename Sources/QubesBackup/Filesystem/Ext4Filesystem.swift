/// A read-only ext2/3/4 filesystem in an image window. Every number read
/// from the image is checked before it is used as an offset, a count or a
/// size; nothing is written; memory is bounded (a capped block cache, no
/// whole-image or whole-file loads).
public final class Ext4Filesystem {
    public struct Options: Sendable {
        /// Whether a metadata checksum mismatch is an error (the default)
        /// or ignored (the fuzz harness, to get past checksums).
        public var verifyChecksums: Bool
        /// Replay a journal that needs recovery, in memory.
        public var replayJournal: Bool
        /// Bytes of metadata blocks kept in memory.
        public var cacheBytes: Int
        /// Largest directory read, in bytes: its entries are held in memory
        /// while the walk is below it.
        public var maxDirectoryBytes: Int

        public init(verifyChecksums: Bool = true, replayJournal: Bool = true,
                    cacheBytes: Int = 32 << 20, maxDirectoryBytes: Int = 64 << 20) {
            self.verifyChecksums = verifyChecksums
            self.replayJournal = replayJournal
            self.cacheBytes = cacheBytes
            self.maxDirectoryBytes = maxDirectoryBytes
        }
    }

    public static let rootInode: UInt32 = 2

    public let window: ImageWindow
    public let superblock: Superblock
    public let options: Options
    /// Problems with the filesystem as a whole, found while opening it
    /// (superblock checksum, journal replay): the reader went on, but the
    /// result cannot be called verified.
    public internal(set) var problems: [String] = []
    /// What the journal replay did, for `--info` and messages.
    public internal(set) var journalSummary: String?
    /// The journal's own superblock, when there is a readable journal.
    public internal(set) var journalSuperblock: JournalSuperblock?

    let blockSize: Int
    private var cache = BlockCache()
    private var reportedGroups = Set<UInt32>()
    var journal: JournalState?

    public init(window: ImageWindow, options: Options = Options()) throws(QBError) {
        self.window = window
        self.options = options
        let raw: [UInt8]
        do {
            raw = try window.read(at: Superblock.offset, count: Superblock.size)
        } catch {
            throw QBError(.malformed, "too small to hold an ext2/3/4 filesystem (\(window.length) bytes)", subject: window.file.path)
        }
        do {
            superblock = try Superblock(raw, filesystemBytes: window.length)
        } catch {
            throw error.about(window.file.path)
        }
        blockSize = superblock.blockSize
        cache.capacity = max(16, options.cacheBytes / blockSize)
        if !superblock.checksumMatches {
            if options.verifyChecksums { problems.append("superblock checksum does not match") }
        }
        try openJournal()
    }

    // MARK: - Blocks

    /// Bounds-checks a block range: `count` blocks from `block`.
    func checkBlocks(_ block: UInt64, count: UInt64 = 1, what: @autoclosure () -> String) throws(QBError) {
        guard count <= superblock.blocksCount, block <= superblock.blocksCount - count else {
            throw QBError(.malformed, "\(what()) points at block \(block)\(count > 1 ? "+\(count)" : ""), outside the filesystem's \(superblock.blocksCount) blocks")
        }
    }

    /// One metadata block, as the journal last committed it where replay
    /// applies, through the block cache.
    func block(_ number: UInt64, what: @autoclosure () -> String) throws(QBError) -> [UInt8] {
        try checkBlocks(number, what: what())
        if let cached = cache.get(number) { return cached }
        let bytes: [UInt8]
        if let replayed = try journal?.replayedContents(of: number) {
            bytes = replayed
        } else {
            bytes = try window.read(at: Int64(number) * Int64(blockSize), count: blockSize)
        }
        cache.put(number, bytes)
        return bytes
    }

    // MARK: - Inodes

    /// Inode `number`, read from its group's inode table and checked.
    public func inode(_ number: UInt32) throws(QBError) -> Inode {
        let sb = superblock
        guard number >= 1, number <= sb.inodesCount else {
            throw QBError(.malformed, "inode number \(number) is outside 1…\(sb.inodesCount)")
        }
        let group = (number - 1) / sb.inodesPerGroup
        let index = (number - 1) % sb.inodesPerGroup
        let descriptor = try groupDescriptor(group)
        if options.verifyChecksums && !descriptor.checksumMatches && reportedGroups.insert(group).inserted {
            // Salvage: the kernel would refuse to mount, but the inode
            // table's location is still checked against the filesystem and
            // each inode has its own checksum; say so and go on.
            problems.append("group descriptor \(group) checksum does not match; its inodes were read all the same")
        }
        let byteInTable = UInt64(index) * UInt64(sb.inodeSize)
        // The table's start is checked before it is added to: a 64-bit
        // descriptor can hold any number, and the sum would overflow.
        try checkBlocks(descriptor.inodeTable, count: 1, what: "group \(group)'s inode table")
        let tableBlock = descriptor.inodeTable + byteInTable / UInt64(blockSize)
        let bytes = try block(tableBlock, what: "inode \(number)")
        let start = Int(byteInTable % UInt64(blockSize))
        return try Inode(number: number, raw: Array(bytes[start..<(start + sb.inodeSize)]), superblock: sb, verify: options.verifyChecksums)
    }

    func groupDescriptor(_ group: UInt32) throws(QBError) -> GroupDescriptor {
        let sb = superblock
        guard group < sb.groupCount else { throw QBError(.malformed, "block group \(group) does not exist") }
        let perBlock = UInt32(blockSize / sb.descriptorSize)
        let descriptorBlock = group / perBlock
        let location: UInt64
        if sb.features.incompatible.contains(.metaBlockGroups) && descriptorBlock >= sb.firstMetaBlockGroup {
            // meta_bg: each descriptor block lives in the first group of the
            // groups it describes, after that group's superblock copy.
            let first = descriptorBlock * perBlock
            location = UInt64(sb.firstDataBlock) + UInt64(first) * UInt64(sb.blocksPerGroup) + (hasSuperblockCopy(first) ? 1 : 0)
        } else {
            location = UInt64(sb.firstDataBlock) + 1 + UInt64(descriptorBlock)
        }
        let bytes = try block(location, what: "group descriptor block \(descriptorBlock)")
        let start = Int(group % perBlock) * sb.descriptorSize
        return GroupDescriptor(bytes[start..<(start + sb.descriptorSize)], group: group, superblock: sb)
    }

    private func hasSuperblockCopy(_ group: UInt32) -> Bool {
        if group <= 1 || !superblock.features.readOnlyCompatible.contains(.sparseSuper) { return true }
        for base: UInt32 in [3, 5, 7] {
            var power: UInt64 = UInt64(base)
            while power < UInt64(group) { power *= UInt64(base) }
            if power == UInt64(group) { return true }
        }
        return false
    }

    var hasMetadataChecksums: Bool { superblock.features.readOnlyCompatible.contains(.metadataChecksum) }
}

/// A bounded cache of metadata blocks: inode tables, directory, extent and
/// indirect blocks are re-read often during a walk. Eviction is
/// first-in-first-out, which is enough for a walk's locality.
struct BlockCache {
    var capacity = 1024
    private var blocks: [UInt64: [UInt8]] = [:]
    private var order: [UInt64] = []
    private var head = 0

    func get(_ n: UInt64) -> [UInt8]? { blocks[n] }

    mutating func put(_ n: UInt64, _ bytes: [UInt8]) {
        if blocks[n] != nil { blocks[n] = bytes; return }
        if order.count < capacity {
            order.append(n)
        } else {
            blocks[order[head]] = nil
            order[head] = n
            head = (head + 1) % capacity
        }
        blocks[n] = bytes
    }
}
