import Synchronization

/// A read-only ext2/3/4 filesystem in an image window. Every number read
/// from the image is checked before it is used as an offset, a count or a
/// size; nothing is written; memory is bounded (a capped block cache, a
/// budget for what a walk holds, no whole-image or whole-file loads).
///
/// Every block is read through one stack of sources (`BlockSource`): the
/// image, then the journal's replayed view when the filesystem needs
/// recovery, then the cache. The journal inode is read from the image as it
/// is on disk, as the kernel and e2fsck read it; after the replay the
/// superblock is read again from the replayed view, as e2fsck reopens the
/// filesystem after recovery, and the cache starts empty.
public final class Ext4Filesystem: Sendable {
    public struct Options: Sendable {
        /// Whether a metadata checksum mismatch is an error (the default)
        /// or ignored (the fuzz harness, to get past checksums).
        public var verifyChecksums: Bool
        /// Replay a journal that needs recovery, in memory.
        public var replayJournal: Bool
        /// Bytes of metadata blocks kept in memory.
        public var cacheBytes: Int
        /// Bytes a walk may hold at once: the open directories' blocks and
        /// data runs, their paths, the first names of hard-linked files.
        public var walkMemoryBytes: Int
        /// Added to the message when the walk's budget is used up: how
        /// the caller's user raises it.
        public var budgetHint: String?

        public static let defaultWalkMemoryBytes = 256 << 20

        public init(verifyChecksums: Bool = true, replayJournal: Bool = true,
                    cacheBytes: Int = 16 << 20, walkMemoryBytes: Int = Options.defaultWalkMemoryBytes,
                    budgetHint: String? = nil) {
            self.verifyChecksums = verifyChecksums
            self.replayJournal = replayJournal
            self.cacheBytes = cacheBytes
            self.walkMemoryBytes = walkMemoryBytes
            self.budgetHint = budgetHint
        }
    }

    public static let rootInode: UInt32 = 2

    public let window: ImageWindow
    /// The superblock as the reader uses it: after the journal's replay
    /// when there was one.
    public let superblock: Superblock
    public let options: Options
    /// What the journal replay did, for `--info` and messages.
    public let journalSummary: String?
    /// The journal's own superblock, when there is a readable journal.
    public let journalSuperblock: JournalSuperblock?
    /// Whether the blocks are read through a replayed journal.
    public let journalReplayed: Bool

    /// The top of the block-source stack; every read goes through it.
    let blocks: BlockSource
    let blockSize: Int
    private let state: Mutex<SharedState>
    /// Index blocks (extent nodes, indirect blocks) read so far while
    /// mapping files, against `mappingWorkLimit`.
    private let mappingWork = Atomic<Int>(0)
    let mappingWorkLimit: Int

    private struct SharedState: ~Copyable {
        var problems: [String]
        var reportedGroups = Set<UInt32>()
    }

    /// Problems with the filesystem as a whole (superblock checksum,
    /// journal replay, a group descriptor's checksum): the reader went on,
    /// but the result cannot be called verified.
    public var problems: [String] { state.withLock { $0.problems } }

    func addProblem(_ problem: String) { state.withLock { $0.problems.append(problem) } }

    /// Opens the filesystem in `window`, replaying its journal in memory
    /// when it needs recovery (unless told not to).
    public convenience init(window: ImageWindow, options: Options = Options()) throws(QBError) {
        let opened = try Self.open(window, options)
        self.init(window: window, superblock: opened.superblock,
                  blocks: CachedBlocks(below: opened.source, bytes: options.cacheBytes), options: options,
                  problems: opened.problems, journalSummary: opened.journalSummary,
                  journalSuperblock: opened.journalSuperblock, journalReplayed: opened.replayed)
    }

    init(window: ImageWindow, superblock: Superblock, blocks: BlockSource, options: Options, problems: [String] = [],
         journalSummary: String? = nil, journalSuperblock: JournalSuperblock? = nil, journalReplayed: Bool = false) {
        self.window = window
        self.superblock = superblock
        self.blocks = blocks
        self.options = options
        self.journalSummary = journalSummary
        self.journalSuperblock = journalSuperblock
        self.journalReplayed = journalReplayed
        blockSize = superblock.blockSize
        state = Mutex(SharedState(problems: problems))
        // A file's map is read a few times per walk (its claim, its data,
        // a tar header's sparse map), and each index block belongs to one
        // file: a few reads per block of the filesystem is far more than a
        // sound filesystem needs, and bounds one whose files share index
        // blocks to make the walk loop.
        let limit = superblock.blocksCount.multipliedReportingOverflow(by: 4)
        mappingWorkLimit = limit.overflow || limit.partialValue > UInt64(Int.max / 2) ? Int.max / 2 : Int(limit.partialValue) + 65_536
    }

    // MARK: - Opening

    private struct Opened {
        var superblock: Superblock
        var source: BlockSource
        var problems: [String] = []
        var journalSummary: String?
        var journalSuperblock: JournalSuperblock?
        var replayed = false
    }

    static func readSuperblock(_ source: BlockSource, at block: UInt64, filesystemBytes: Int64) throws(QBError) -> Superblock {
        let bytes = try source.block(block)
        let start = Int(Superblock.offset) % source.blockSize
        return try Superblock(Array(bytes[start..<(start + Superblock.size)]), filesystemBytes: filesystemBytes)
    }

    private static func open(_ window: ImageWindow, _ options: Options) throws(QBError) -> Opened {
        let raw: [UInt8]
        do {
            raw = try window.read(at: Superblock.offset, count: Superblock.size)
        } catch {
            throw QBError(.malformed, "too small to hold an ext2/3/4 filesystem (\(window.length) bytes)", subject: window.file.path)
        }
        let onDisk: Superblock
        do {
            onDisk = try Superblock(raw, filesystemBytes: window.length)
        } catch {
            throw error.about(window.file.path)
        }
        let image = ImageBlocks(window: window, blockSize: onDisk.blockSize)
        var opened = Opened(superblock: onDisk, source: image)
        if !onDisk.checksumMatches && options.verifyChecksums { opened.problems.append("superblock checksum does not match") }
        guard onDisk.features.compatible.contains(.hasJournal) else { return opened }
        let needsRecovery = onDisk.features.incompatible.contains(.needsRecovery)
        if onDisk.journalInode == 0 {
            var names: [String] = []
            if onDisk.journalUUID.contains(where: { $0 != 0 }) { names.append("UUID \(uuidString(onDisk.journalUUID))") }
            if onDisk.journalDevice != 0 { names.append("device number 0x\(String(onDisk.journalDevice, radix: 16))") }
            let place = "on another device" + (names.isEmpty ? "" : " (\(names.joined(separator: ", ")))")
            opened.journalSummary = "external, \(place)" + (needsRecovery ? "; needs recovery, not replayed" : "")
            if needsRecovery {
                opened.problems.append("the journal is \(place) and needs recovery; it was not replayed, so the last changes before the filesystem stopped may be missing")
            }
            return opened
        }
        if needsRecovery && !options.replayJournal {
            opened.journalSummary = "needs recovery; not replayed (--no-journal)"
            return opened
        }
        do throws(QBError) {
            // The journal inode, its map and the journal itself are read as
            // they are on disk, by a reader of its own with no cache: the
            // filesystem's reader starts after the replay.
            let onDiskReader = Ext4Filesystem(window: window, superblock: onDisk, blocks: image, options: options)
            let journalInode = try onDiskReader.inode(onDisk.journalInode)
            guard journalInode.kind == .regular else {
                throw QBError(.malformed, "journal inode \(onDisk.journalInode) is not a regular file")
            }
            var runs: [DataRun] = []
            try onDiskReader.forEachRun(of: journalInode) { (run: DataRun) throws(QBError) in runs.append(run) }
            let journalBlocks = journalInode.size / UInt64(onDisk.blockSize)
            let read = { (i: UInt64) throws(QBError) -> [UInt8] in try ReplayedBlocks.journalBlock(i, runs: runs, image: image) }
            let journalSuperblock = try JournalReplay.superblock(journalBlocks: journalBlocks, blockSize: onDisk.blockSize, readJournalBlock: read)
            opened.journalSuperblock = journalSuperblock
            guard needsRecovery else {
                opened.journalSummary = "clean"
                return opened
            }
            // Targets are bounded by the image, not by the block count the
            // superblock had before the replay: an online resize journals
            // blocks past the old end along with the superblock that says so.
            let overlay = try JournalReplay.replay(journalBlocks: journalBlocks, blockSize: onDisk.blockSize,
                                                   filesystemBlocks: image.blockCount, readJournalBlock: read)
            let replayed = ReplayedBlocks(below: image, overlay: overlay, journalRuns: runs)
            let after: Superblock
            do {
                after = try readSuperblock(replayed, at: onDisk.superblockBlock, filesystemBytes: window.length)
            } catch {
                throw QBError(error.kind, "the superblock it replays is unreadable: \(error.message)")
            }
            guard after.blockSize == onDisk.blockSize else {
                throw QBError(.malformed, "the superblock it replays has \(after.blockSize)-byte blocks, not \(onDisk.blockSize)")
            }
            opened.superblock = after
            opened.source = replayed
            opened.replayed = true
            opened.problems.removeAll()
            if !after.checksumMatches && options.verifyChecksums { opened.problems.append("superblock checksum does not match (after the journal's replay)") }
            let t = overlay.transactions, b = overlay.blocks.count
            opened.journalSummary = "replayed in memory: \(t) transaction\(t == 1 ? "" : "s"), \(b) block\(b == 1 ? "" : "s")"
            for warning in overlay.warnings { opened.problems.append("journal: " + warning) }
        } catch {
            if !needsRecovery {
                opened.journalSummary = "unreadable (\(error.message))"
                return opened
            }
            opened.problems.append("journal cannot be replayed: \(error.message); the filesystem is read as it is on disk")
            opened.journalSummary = "needs recovery; replay failed"
        }
        return opened
    }

    // MARK: - Blocks

    /// Bounds-checks a block range: `count` blocks from `block`.
    func checkBlocks(_ block: UInt64, count: UInt64 = 1, what: @autoclosure () -> String) throws(QBError) {
        guard count <= superblock.blocksCount, block <= superblock.blocksCount - count else {
            throw QBError(.malformed, "\(what()) points at block \(block)\(count > 1 ? "+\(count)" : ""), outside the filesystem's \(superblock.blocksCount) blocks")
        }
    }

    /// One metadata block, through the block-source stack.
    func block(_ number: UInt64, what: @autoclosure () -> String) throws(QBError) -> [UInt8] {
        try checkBlocks(number, what: what())
        return try blocks.block(number)
    }

    /// Counts one index block read while mapping a file, against the
    /// image's budget.
    func chargeMappingWork() throws(QBError) {
        let done = mappingWork.wrappingAdd(1, ordering: .relaxed).newValue
        guard done <= mappingWorkLimit else {
            throw QBError(.limitExceeded, "reading the files' block maps took more than \(mappingWorkLimit) index-block reads (4 per block of the filesystem)",
                          hint: "the image makes files share their maps")
        }
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
        if options.verifyChecksums && !descriptor.checksumMatches {
            // Salvage: the kernel would refuse to mount, but the inode
            // table's location is still checked against the filesystem and
            // each inode has its own checksum; say so and go on.
            let first = state.withLock { $0.reportedGroups.insert(group).inserted }
            if first { addProblem("group descriptor \(group) checksum does not match; its inodes were read all the same") }
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
        let perBlock = sb.descriptorsPerBlock
        let descriptorBlock = group / perBlock
        let bytes = try block(sb.descriptorBlockLocation(descriptorBlock), what: "group descriptor block \(descriptorBlock)")
        let start = Int(group % perBlock) * sb.descriptorSize
        return GroupDescriptor(bytes[start..<(start + sb.descriptorSize)], group: group, superblock: sb)
    }

    var hasMetadataChecksums: Bool { superblock.features.readOnlyCompatible.contains(.metadataChecksum) }
}

/// A UUID in its usual text form.
func uuidString(_ uuid: [UInt8]) -> String {
    let hex = uuid.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
    guard hex.count == 16 else { return hex.joined() }
    return [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]].map { $0.joined() }.joined(separator: "-")
}
