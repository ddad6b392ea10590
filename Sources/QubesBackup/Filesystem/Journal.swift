/// jbd2 journal replay, in memory. An ext3/4 image whose `needs_recovery`
/// flag is set holds committed metadata (and sometimes data) only in its
/// journal; reading the image without replaying would show the filesystem as
/// it was before those transactions. We never write the image: the replay
/// produces an overlay that says, for each filesystem block, which journal
/// block holds its newest committed copy, and readers consult it first.
///
/// The walk follows the kernel's and e2fsck's `recovery.c` (three passes:
/// find the end of the log, collect revokes, replay) so that what we show is
/// what `e2fsck` would have written. The journal comes from a possibly hostile
/// VM, so every count, offset and block number is checked before use, the walk
/// visits each log block a bounded number of times, and memory holds block
/// locations, never block contents.

/// Where the newest committed copy of each filesystem block lives in the journal.
public struct JournalOverlay: Sendable {
    public struct Location: Sendable, Equatable {
        /// Index of the copy among the journal inode's data blocks.
        public var journalBlock: UInt64
        /// The copy's first four bytes were replaced by zeros because they
        /// equalled the journal magic (a data block must not look like a
        /// journal header); `contents(of:)` puts the magic back.
        public var escaped: Bool

        public init(journalBlock: UInt64, escaped: Bool) {
            self.journalBlock = journalBlock
            self.escaped = escaped
        }
    }

    /// Filesystem block → its newest committed copy.
    public var blocks: [UInt64: Location]
    /// Committed transactions replayed.
    public var transactions: Int
    /// What the replay could not do, for the user, one line each.
    public var warnings: [String]

    public init(blocks: [UInt64: Location] = [:], transactions: Int = 0, warnings: [String] = []) {
        self.blocks = blocks
        self.transactions = transactions
        self.warnings = warnings
    }

    /// Whether the journal replaced any of `count` blocks from `block`.
    public func replacesAny(_ block: UInt64, count: UInt64) -> Bool {
        if blocks.isEmpty || count == 0 { return false }
        if count <= UInt64(blocks.count) {
            return (block..<(block + count)).contains { blocks[$0] != nil }
        }
        return blocks.keys.contains { $0 >= block && $0 - block < count }
    }

    /// The block's replayed contents, or nil when the journal holds none. Restores the escaped magic.
    public func contents(of filesystemBlock: UInt64,
                         readJournalBlock: (UInt64) throws(QBError) -> [UInt8]) throws(QBError) -> [UInt8]? {
        guard let location = blocks[filesystemBlock] else { return nil }
        var bytes = try readJournalBlock(location.journalBlock)
        if location.escaped {
            // The reader returns whole blocks; a shorter one is the caller's
            // bug, but we must not trap on it.
            guard bytes.count >= 4 else {
                throw QBError(.truncated, "journal block \(location.journalBlock) is shorter than 4 bytes", subject: "journal")
            }
            bytes[0] = 0xC0; bytes[1] = 0x3B; bytes[2] = 0x39; bytes[3] = 0x98
        }
        return bytes
    }
}

/// The journal superblock (block 0 of the journal), parsed and checked.
public struct JournalSuperblock: Sendable, Equatable {
    /// 1 or 2 (block type 3 or 4). Version 1 has no feature fields.
    public var version: Int
    public var blockSize: Int
    /// s_maxlen: the journal's length in blocks, as the journal states it.
    public var maxLength: UInt32
    /// s_first: the first block of the log (block 0 is this superblock).
    public var first: UInt32
    /// s_sequence: the first transaction expected in the log.
    public var sequence: UInt32
    /// s_start: the log's first block; 0 when the journal is clean.
    public var start: UInt32
    /// s_errno: nonzero when the journal was aborted.
    public var errno: Int32
    public var compatFeatures: UInt32
    public var incompatFeatures: UInt32
    public var roCompatFeatures: UInt32
    public var uuid: [UInt8]
    /// s_checksum_type (4 = crc32c for checksum v2/v3).
    public var checksumType: UInt8
    /// Blocks at the end of the journal reserved for fast commits (0 without the feature).
    public var fastCommitBlocks: UInt32

    static let magic: UInt32 = 0xC03B_3998
    static let compatChecksum: UInt32 = 0x1
    static let incompatRevoke: UInt32 = 0x1
    static let incompat64Bit: UInt32 = 0x2
    static let incompatAsyncCommit: UInt32 = 0x4
    static let incompatCsumV2: UInt32 = 0x8
    static let incompatCsumV3: UInt32 = 0x10
    static let incompatFastCommit: UInt32 = 0x20
    static let knownIncompat: UInt32 = 0x3F
    /// The kernel's JBD2_MIN_JOURNAL_BLOCKS, which it requires of the log
    /// left after the fast-commit area.
    static let minimumLogBlocks: UInt32 = 1024
    /// JBD2_DEFAULT_FAST_COMMIT_BLOCKS, used when s_num_fc_blks is 0.
    static let defaultFastCommitBlocks: UInt32 = 256

    /// Parses block 0 of the journal. `journalBlocks` is the journal inode's
    /// size in blocks and `blockSize` the filesystem's: a journal that claims
    /// more blocks than its inode holds, or another block size, is refused.
    public init(parsing block: [UInt8], journalBlocks: UInt64, blockSize: Int) throws(QBError) {
        // 1024 bytes is the structure; a smaller block cannot hold it.
        guard block.count >= 1024 else {
            throw QBError(.truncated, "journal superblock is shorter than 1024 bytes", subject: "journal")
        }
        guard block.be32(0) == Self.magic else {
            throw QBError(.malformed, "journal superblock has a bad magic number", subject: "journal",
                          hint: "the journal inode does not hold a jbd2 journal")
        }
        switch block.be32(4) {
        case 3: version = 1
        case 4: version = 2
        case 1, 2, 5, 6:
            throw QBError(.malformed, "journal superblock has the type of a log block (\(block.be32(4)))", subject: "journal")
        default:
            throw QBError(.unsupported, "journal superblock version \(block.be32(4)) is not supported", subject: "journal")
        }
        self.blockSize = Int(block.be32(12))
        maxLength = block.be32(16)
        first = block.be32(20)
        sequence = block.be32(24)
        start = block.be32(28)
        errno = Int32(bitPattern: block.be32(32))
        uuid = Array(block[48..<64])
        if version == 2 {
            compatFeatures = block.be32(36)
            incompatFeatures = block.be32(40)
            roCompatFeatures = block.be32(44)
            checksumType = block[0x50]
            fastCommitBlocks = 0
        } else {
            // Version 1 predates the feature fields; whatever those bytes
            // hold means nothing (e2fsck clears them).
            compatFeatures = 0; incompatFeatures = 0; roCompatFeatures = 0
            checksumType = 0; fastCommitBlocks = 0
        }

        let unknown = incompatFeatures & ~Self.knownIncompat
        if unknown != 0 {
            throw QBError(.unsupported, "journal has unknown incompatible features " + Self.bitNames(unknown),
                          subject: "journal")
        }
        // No read-only-compatible journal feature exists yet; one we do not
        // know may change what replay must do, so refuse as e2fsck does.
        if roCompatFeatures != 0 {
            throw QBError(.unsupported, "journal has unknown read-only-compatible features " + Self.bitNames(roCompatFeatures),
                          subject: "journal")
        }
        if version == 2, block.be32(0x40) > 1 {
            throw QBError(.unsupported, "journal is shared by \(block.be32(0x40)) filesystems", subject: "journal",
                          hint: "only a journal internal to one filesystem is supported")
        }
        let v2 = incompatFeatures & Self.incompatCsumV2 != 0, v3 = incompatFeatures & Self.incompatCsumV3 != 0
        if v2 && v3 {
            throw QBError(.malformed, "journal has both checksum v2 and v3", subject: "journal")
        }
        if (v2 || v3) && compatFeatures & Self.compatChecksum != 0 {
            throw QBError(.malformed, "journal has both checksum v1 and v\(v3 ? 3 : 2)", subject: "journal")
        }
        if v2 || v3 {
            guard checksumType == 4 else {
                throw QBError(.malformed, "journal checksum type \(checksumType) is not crc32c", subject: "journal")
            }
            // crc32c(~0) of the 1024-byte superblock with s_checksum zeroed.
            let stored = block.be32(0xFC)
            let computed = CRC32C.update(~0, Array(block[0..<1024]).zeroing(0xFC..<0x100))
            guard stored == computed else {
                throw QBError(.malformed, "journal superblock checksum does not match", subject: "journal")
            }
        }
        guard self.blockSize == blockSize else {
            throw QBError(.malformed, "journal block size \(self.blockSize) differs from the filesystem's \(blockSize)",
                          subject: "journal")
        }
        guard UInt64(maxLength) <= journalBlocks else {
            throw QBError(.malformed, "journal claims \(maxLength) blocks but its inode holds \(journalBlocks)",
                          subject: "journal")
        }
        if incompatFeatures & Self.incompatFastCommit != 0 {
            let stated = block.be32(0x54)
            fastCommitBlocks = stated == 0 ? Self.defaultFastCommitBlocks : stated
            guard fastCommitBlocks < maxLength, maxLength - fastCommitBlocks >= Self.minimumLogBlocks else {
                throw QBError(.malformed, "journal fast-commit area of \(fastCommitBlocks) blocks leaves too short a log",
                              subject: "journal")
            }
        }
        // Block 0 is this superblock, so the log starts at 1 or later and
        // needs at least one block before its end.
        guard first >= 1, first < logEnd else {
            throw QBError(.malformed, "journal log starts at block \(first), outside 1..<\(logEnd)", subject: "journal")
        }
        guard start == 0 || (start >= first && start < logEnd) else {
            throw QBError(.malformed, "journal start block \(start) is outside the log \(first)..<\(logEnd)",
                          subject: "journal")
        }
    }

    /// One past the last block of the circular log (the kernel's j_last):
    /// the fast-commit area, when there is one, follows it.
    public var logEnd: UInt32 { maxLength - fastCommitBlocks }

    /// Nothing to replay: the journal was closed cleanly.
    public var isClean: Bool { start == 0 }

    var has64Bit: Bool { incompatFeatures & Self.incompat64Bit != 0 }
    var hasCsumV2: Bool { incompatFeatures & Self.incompatCsumV2 != 0 }
    var hasCsumV3: Bool { incompatFeatures & Self.incompatCsumV3 != 0 }
    var hasCsumV2or3: Bool { hasCsumV2 || hasCsumV3 }
    var hasCsumV1: Bool { compatFeatures & Self.compatChecksum != 0 }
    var hasAsyncCommit: Bool { incompatFeatures & Self.incompatAsyncCommit != 0 }
    var hasFastCommit: Bool { incompatFeatures & Self.incompatFastCommit != 0 }

    /// Bytes of one descriptor tag, without the 16-byte uuid that may follow
    /// (the kernel's journal_tag_bytes).
    var tagBytes: Int {
        if hasCsumV3 { return 16 }
        var size = 12
        if hasCsumV2 { size += 2 }
        return has64Bit ? size : size - 4
    }

    /// Feature names as dumpe2fs prints them.
    public var featureNames: [String] {
        var names: [String] = []
        if compatFeatures & Self.compatChecksum != 0 { names.append("journal_checksum") }
        let incompat: [(UInt32, String)] = [
            (Self.incompatRevoke, "journal_incompat_revoke"), (Self.incompat64Bit, "journal_64bit"),
            (Self.incompatAsyncCommit, "journal_async_commit"), (Self.incompatCsumV2, "journal_checksum_v2"),
            (Self.incompatCsumV3, "journal_checksum_v3"), (Self.incompatFastCommit, "journal_fast_commit"),
        ]
        for (bit, name) in incompat where incompatFeatures & bit != 0 { names.append(name) }
        return names
    }

    /// How log blocks are checksummed: "none", "crc32 (v1)", "crc32c (v2)", "crc32c (v3)".
    public var checksumDescription: String {
        if hasCsumV3 { return "crc32c (v3)" }
        if hasCsumV2 { return "crc32c (v2)" }
        if hasCsumV1 { return "crc32 (v1)" }
        return "none"
    }

    static func bitNames(_ bits: UInt32) -> String {
        var parts: [String] = []
        for i in 0..<32 where bits & (1 << UInt32(i)) != 0 {
            parts.append("0x" + String(UInt32(1) << UInt32(i), radix: 16))
        }
        return parts.joined(separator: ", ")
    }
}

public enum JournalReplay {
    /// Reads and checks the journal superblock, for `qb-fs --info` and for `replay`.
    public static func superblock(journalBlocks: UInt64, blockSize: Int,
                                  readJournalBlock: (UInt64) throws(QBError) -> [UInt8]) throws(QBError) -> JournalSuperblock {
        guard journalBlocks >= 2 else {
            throw QBError(.malformed, "journal inode holds \(journalBlocks) blocks, too few for a journal", subject: "journal")
        }
        let block = try readJournalBlock(0)
        guard block.count == blockSize else {
            throw QBError(.truncated, "journal block 0 is \(block.count) bytes, not \(blockSize)", subject: "journal")
        }
        return try JournalSuperblock(parsing: block, journalBlocks: journalBlocks, blockSize: blockSize)
    }

    /// `readJournalBlock(i)` returns the i-th block (0-based) of the journal inode's data, `blockSize` bytes; the caller maps it through the journal inode.
    /// `journalBlocks` is the journal inode's size in blocks; `filesystemBlocks` the filesystem's block count (targets at or above it are refused as .malformed).
    /// Checksums are seeded with the journal superblock's own uuid, as the
    /// kernel (jbd2 `load_superblock`) and e2fsck do; for an internal journal
    /// mke2fs copies the filesystem's uuid there, so no separate uuid is needed.
    public static func replay(journalBlocks: UInt64, blockSize: Int, filesystemBlocks: UInt64,
                              readJournalBlock: (UInt64) throws(QBError) -> [UInt8]) throws(QBError) -> JournalOverlay {
        // Block sizes outside 1 KiB...64 KiB are not ext4's, and bounding it
        // keeps every offset computation below small.
        guard blockSize >= 1024, blockSize <= 65_536, blockSize & (blockSize - 1) == 0 else {
            throw QBError(.malformed, "block size \(blockSize) is not a power of two from 1024 to 65536", subject: "journal")
        }
        let sb = try superblock(journalBlocks: journalBlocks, blockSize: blockSize, readJournalBlock: readJournalBlock)
        if sb.isClean { return JournalOverlay() }
        var walker = Walker(sb: sb, filesystemBlocks: filesystemBlocks)
        if sb.errno != 0 {
            walker.overlay.warnings.append("journal was aborted with error \(sb.errno); replaying what was committed")
        }
        try walker.pass(.scan, read: readJournalBlock)
        try walker.pass(.revoke, read: readJournalBlock)
        try walker.pass(.replay, read: readJournalBlock)
        if sb.hasFastCommit {
            walker.overlay.warnings.append("journal has fast commits; fast-commit updates were not replayed")
        }
        return walker.overlay
    }

    /// Most revoke records plus replayed blocks kept at once. A real journal
    /// (at most 2^18 blocks of 4 KiB for mke2fs's 1 GiB maximum) stays far
    /// below; a hostile one full of revoke records could otherwise make us
    /// hold hundreds of millions of entries.
    public static let maximumEntries = 4_194_304

    enum Pass { case scan, revoke, replay }

    /// One walk over the log per pass; the state the passes share.
    struct Walker {
        let sb: JournalSuperblock
        let filesystemBlocks: UInt64
        let seed: UInt32
        /// The first transaction not replayed, found by the scan pass.
        var endTransaction: UInt32 = 0
        var endFound = false
        /// Filesystem block → the newest transaction that revoked it.
        var revoked: [UInt64: UInt32] = [:]
        var overlay = JournalOverlay()

        init(sb: JournalSuperblock, filesystemBlocks: UInt64) {
            self.sb = sb
            self.filesystemBlocks = filesystemBlocks
            seed = sb.hasCsumV2or3 ? CRC32C.update(~0, sb.uuid) : 0
        }

        /// Wrap-safe transaction id comparison (the kernel's tid_geq).
        static func tidGEQ(_ x: UInt32, _ y: UInt32) -> Bool { Int32(bitPattern: x &- y) >= 0 }
        static func tidGT(_ x: UInt32, _ y: UInt32) -> Bool { Int32(bitPattern: x &- y) > 0 }

        func readBlock(_ index: UInt64, _ read: (UInt64) throws(QBError) -> [UInt8]) throws(QBError) -> [UInt8] {
            // The superblock checked that the log lies inside the inode; this
            // guards the reader against our own arithmetic too.
            guard index < UInt64(sb.maxLength) else {
                throw QBError(.malformed, "journal block \(index) is past the journal's \(sb.maxLength) blocks", subject: "journal")
            }
            let block = try read(index)
            guard block.count == sb.blockSize else {
                throw QBError(.truncated, "journal block \(index) is \(block.count) bytes, not \(sb.blockSize)", subject: "journal")
            }
            return block
        }

        /// `position` moved `count` blocks on around the circular log.
        func advance(_ position: UInt64, by count: UInt64) -> UInt64 {
            let first = UInt64(sb.first), length = UInt64(sb.logEnd) - first
            return first + (position - first + count % length) % length
        }

        /// Descriptor and revoke blocks end with crc32c(seed, block with the tail zeroed).
        func tailChecksumValid(_ block: [UInt8]) -> Bool {
            guard sb.hasCsumV2or3 else { return true }
            let at = block.count - 4
            return block.be32(at) == CRC32C.update(seed, block.zeroing(at..<block.count))
        }

        /// Commit blocks carry crc32c(seed, block with h_chksum[0] zeroed) in h_chksum[0].
        func commitChecksumValid(_ block: [UInt8]) -> Bool {
            guard sb.hasCsumV2or3 else { return true }
            return block.be32(16) == CRC32C.update(seed, block.zeroing(16..<20))
        }

        /// The tags of a descriptor block: (offset of the tag, flags).
        /// Mirrors the kernel's loop: a tag must fit before the tail, a
        /// 16-byte uuid follows unless SAME_UUID, LAST_TAG ends the list.
        func tags(of block: [UInt8]) -> [(offset: Int, flags: UInt16)] {
            let tagBytes = sb.tagBytes
            let end = block.count - (sb.hasCsumV2or3 ? 4 : 0)
            var offset = 12
            var result: [(offset: Int, flags: UInt16)] = []
            while offset + tagBytes <= end {
                // The flags are a be16 at offset 6 in the old tag and the low
                // half of a be32 at offset 4 in tag3: the same two bytes.
                let flags = block.be16(offset + 6)
                result.append((offset, flags))
                offset += tagBytes
                if flags & 2 == 0 { offset += 16 }  // SAME_UUID clear: a uuid follows
                if flags & 8 != 0 { break }  // LAST_TAG
            }
            return result
        }

        func targetBlock(_ block: [UInt8], tagAt offset: Int) -> UInt64 {
            var target = UInt64(block.be32(offset))
            if sb.has64Bit { target |= UInt64(block.be32(offset + 8)) << 32 }
            return target
        }

        /// The tag's checksum of the data block: crc32c(seed, sequence
        /// big-endian, then the block); v3 keeps 32 bits, v2 the low 16.
        func tagChecksumValid(_ descriptor: [UInt8], tagAt offset: Int, data: [UInt8], sequence: UInt32) -> Bool {
            guard sb.hasCsumV2or3 else { return true }
            let seq: [UInt8] = [UInt8(sequence >> 24), UInt8(sequence >> 16 & 0xFF), UInt8(sequence >> 8 & 0xFF), UInt8(sequence & 0xFF)]
            let crc = CRC32C.update(CRC32C.update(seed, seq), data)
            if sb.hasCsumV3 { return descriptor.be32(offset + 12) == crc }
            return descriptor.be16(offset + 4) == UInt16(crc & 0xFFFF)
        }

        mutating func stopScan(at transaction: UInt32) {
            if !endFound { endTransaction = transaction; endFound = true }
        }

        mutating func pass(_ pass: Pass, read: (UInt64) throws(QBError) -> [UInt8]) throws(QBError) {
            var position = UInt64(sb.start)
            var transaction = sb.sequence
            let logLength = UInt64(sb.logEnd) - UInt64(sb.first)
            // Blocks walked this pass. The log is at most once around the
            // circle; past that a hostile journal is making us loop.
            var walked: UInt64 = 0
            var needCommitTimeCheck = false
            var lastCommitTime: UInt64 = 0
            var crc32Sum: UInt32 = ~0  // checksum v1, over descriptors and their data

            walk: while true {
                if pass != .scan, Self.tidGEQ(transaction, endTransaction) { break }
                if walked >= logLength {
                    if pass == .scan {
                        overlay.warnings.append("journal log runs longer than the journal; replay stopped at transaction \(transaction)")
                    }
                    break
                }
                let block = try readBlock(position, read)
                walked += 1
                position = advance(position, by: 1)
                // Anything but a header of the expected transaction is the end of the log.
                guard block.be32(0) == JournalSuperblock.magic, block.be32(8) == transaction else { break }

                switch block.be32(4) {
                case 1:  // descriptor
                    let tagList = tags(of: block)
                    if !tailChecksumValid(block) {
                        // The scan may meet stale blocks left by lazy journal
                        // initialisation; the commit time decides below. The
                        // later passes stop before such a transaction.
                        if pass != .scan {
                            overlay.warnings.append("journal transaction \(transaction) has a bad descriptor checksum; replay stopped there")
                            break walk
                        }
                        needCommitTimeCheck = true
                    }
                    if pass == .scan, sb.hasCsumV1, !needCommitTimeCheck, !endFound {
                        crc32Sum = CRC32BE.update(crc32Sum, block)
                        for _ in tagList {
                            let data = try readBlock(position, read)
                            crc32Sum = CRC32BE.update(crc32Sum, data)
                            walked += 1
                            position = advance(position, by: 1)
                        }
                        continue walk
                    }
                    if pass != .replay {
                        walked += UInt64(tagList.count)
                        position = advance(position, by: UInt64(tagList.count))
                        continue walk
                    }
                    for tag in tagList {
                        let journalBlock = position
                        walked += 1
                        position = advance(position, by: 1)
                        let target = targetBlock(block, tagAt: tag.offset)
                        guard target < filesystemBlocks else {
                            throw QBError(.malformed, "journal transaction \(transaction) writes block \(target), past the filesystem's \(filesystemBlocks) blocks",
                                          subject: "journal")
                        }
                        if let revokedIn = revoked[target], !Self.tidGT(transaction, revokedIn) { continue }
                        if sb.hasCsumV2or3 {
                            let data = try readBlock(journalBlock, read)
                            guard tagChecksumValid(block, tagAt: tag.offset, data: data, sequence: transaction) else {
                                // The kernel skips the block (keeping any
                                // older copy) and reports the error.
                                overlay.warnings.append("journal transaction \(transaction) has a bad checksum for block \(target); that block was not replayed")
                                continue
                            }
                        }
                        // DELETED (4) is not consulted: the kernel's replay
                        // ignores it too, and revoke records do that job.
                        if overlay.blocks[target] == nil, overlay.blocks.count + revoked.count >= JournalReplay.maximumEntries {
                            throw QBError(.limitExceeded, "journal replays more than \(JournalReplay.maximumEntries) blocks and revocations",
                                          subject: "journal")
                        }
                        overlay.blocks[target] = .init(journalBlock: journalBlock, escaped: tag.flags & 1 != 0)
                    }
                    continue walk

                case 2:  // commit
                    let commitTime = block.be64(48)
                    if needCommitTimeCheck {
                        // A bad descriptor or revoke checksum: if this commit
                        // is no older than the last, the transaction is really
                        // corrupt; if older, the blocks are stale leftovers
                        // and the log simply ends here.
                        if commitTime >= lastCommitTime {
                            overlay.warnings.append("journal transaction \(transaction) has a bad descriptor or revoke checksum; replay stopped there")
                        }
                        stopScan(at: transaction)
                        break walk
                    }
                    if pass == .scan, sb.hasCsumV1 {
                        if endFound { break walk }
                        let type = block[12], size = block[13], found = block.be32(16)
                        let matches = (crc32Sum == found && type == 1 && size == 4) || (type == 0 && size == 0 && found == 0)
                        crc32Sum = ~0
                        if !matches {
                            if commitTime < lastCommitTime { stopScan(at: transaction); break walk }
                            overlay.warnings.append("journal transaction \(transaction) has a bad commit checksum; replay stopped there")
                            stopScan(at: transaction)
                            if !sb.hasAsyncCommit { break walk }
                        }
                    }
                    if pass == .scan, !commitChecksumValid(block) {
                        if commitTime < lastCommitTime { stopScan(at: transaction); break walk }
                        if !endFound {
                            overlay.warnings.append("journal transaction \(transaction) has a bad commit checksum; replay stopped there")
                        }
                        stopScan(at: transaction)
                        // Without async commit a bad commit block is the end;
                        // with it the kernel reads on, but replays nothing
                        // past this transaction either.
                        if !sb.hasAsyncCommit { break walk }
                    }
                    if pass == .scan { lastCommitTime = commitTime }
                    if pass == .replay { overlay.transactions += 1 }
                    transaction &+= 1
                    continue walk

                case 5:  // revoke
                    if pass == .scan, !tailChecksumValid(block) { needCommitTimeCheck = true }
                    if pass != .revoke { continue walk }
                    try collectRevokes(block, transaction: transaction)
                    continue walk

                default:
                    // Unknown type (fast-commit blocks never sit in the log):
                    // the kernel ends the scan here, keeping what came before.
                    break walk
                }
            }
            if pass == .scan { stopScan(at: transaction) }
        }

        mutating func collectRevokes(_ block: [UInt8], transaction: UInt32) throws(QBError) {
            // r_count counts the bytes used, header included.
            let count = Int(block.be32(12))
            let limit = block.count - (sb.hasCsumV2or3 ? 4 : 0)
            guard count <= limit else {
                throw QBError(.malformed, "journal revoke block of transaction \(transaction) claims \(count) bytes, more than \(limit)",
                              subject: "journal")
            }
            let recordLength = sb.has64Bit ? 8 : 4
            var offset = 16
            while offset + recordLength <= count {
                let target = recordLength == 8 ? block.be64(offset) : UInt64(block.be32(offset))
                offset += recordLength
                // A revoke of a block outside the filesystem changes nothing
                // we could replay; not keeping it bounds the table by the
                // filesystem's size.
                guard target < filesystemBlocks else { continue }
                if let existing = revoked[target] {
                    if Self.tidGT(transaction, existing) { revoked[target] = transaction }
                } else {
                    if revoked.count >= JournalReplay.maximumEntries {
                        throw QBError(.limitExceeded, "journal revokes more than \(JournalReplay.maximumEntries) blocks",
                                      subject: "journal")
                    }
                    revoked[target] = transaction
                }
            }
        }
    }
}

/// The kernel's crc32_be (polynomial 0x04C11DB7, most significant bit
/// first, no inversion), which journal checksum v1 uses. Only old journals
/// mounted with `journal_checksum` before v2 existed carry it.
enum CRC32BE {
    static let table: [UInt32] = (0..<256).map { (i: Int) -> UInt32 in
        var crc = UInt32(i) << 24
        for _ in 0..<8 { crc = crc & 0x8000_0000 != 0 ? (crc << 1) ^ 0x04C1_1DB7 : crc << 1 }
        return crc
    }

    static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        var crc = crc
        for byte in bytes { crc = (crc << 8) ^ table[Int((crc >> 24) ^ UInt32(byte))] }
        return crc
    }
}
