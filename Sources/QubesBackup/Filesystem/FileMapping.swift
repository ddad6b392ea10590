/// A stretch of a file's logical blocks and where they are on disk.
struct DataRun: Sendable, Equatable {
    var logical: UInt64
    var physical: UInt64
    var count: UInt64
    /// Allocated but never written (fallocate): reads as zeros.
    var unwritten: Bool
}

/// The blocks given to files so far in a walk, one bit each. ext4 has no
/// shared blocks (no reflinks), so a block mapped twice, by two files or
/// twice by one, is damage: the second claimant is reported and skipped, as
/// e2fsck's pass 1B finds it. This is what bounds a walk's output by the
/// filesystem's size: without it, any number of inodes could map the same
/// blocks and a small image expand into terabytes.
final class BlockClaims {
    private var bits = SparseBitmap()
    /// shared_blocks (read-only deduplicated images) allows data blocks to
    /// be shared; index blocks are still checked.
    let dataMayBeShared: Bool

    init(dataMayBeShared: Bool) { self.dataMayBeShared = dataMayBeShared }

    var bytes: Int { bits.bytes }

    func claim(_ first: UInt64, count: UInt64, data: Bool, inode: UInt32) throws(QBError) {
        if data && dataMayBeShared { return }
        if let taken = bits.insertAll(first, count: count) {
            throw QBError(.malformed, "inode \(inode) maps block \(taken), which an earlier file or directory (or this one) maps already",
                          hint: "blocks are never shared in ext4; this copy is skipped")
        }
    }
}

extension Ext4Filesystem {
    /// The extent tree's deepest legal level (the kernel's EXT4_MAX_EXTENT_DEPTH).
    static let maxExtentDepth = 5

    /// Calls `body` with the file's data runs in increasing logical order,
    /// up to the block that holds its last byte; holes are the gaps
    /// between runs. Every block number is checked against the filesystem,
    /// extent trees are walked with an explicit stack, bounded in depth,
    /// and must increase strictly, so a hostile tree can neither loop nor
    /// make the walk revisit blocks. With `claims`, every data and index
    /// block is claimed for this file (a block claimed before is an error);
    /// every index block read counts against the image's mapping budget.
    func forEachRun(of inode: Inode, claiming claims: BlockClaims? = nil,
                    _ body: (DataRun) throws(QBError) -> Void) throws(QBError) {
        let blocks = (inode.size + UInt64(blockSize) - 1) / UInt64(blockSize)
        if blocks == 0 { return }
        if inode.usesExtents {
            try walkExtents(inode, fileBlocks: blocks, claims: claims, body)
        } else {
            try walkBlockMap(inode, fileBlocks: blocks, claims: claims, body)
        }
    }

    /// The file's runs, for a caller that holds them (a directory being
    /// walked, the journal).
    func runs(of inode: Inode, claiming claims: BlockClaims? = nil) throws(QBError) -> [DataRun] {
        var runs: [DataRun] = []
        try forEachRun(of: inode, claiming: claims) { (run: DataRun) throws(QBError) in runs.append(run) }
        return runs
    }

    // MARK: - Extent trees

    private struct ExtentNode {
        var bytes: [UInt8]
        var entries: Int
        var depth: Int
        var next = 0
        /// Logical blocks below this node start at or after `low` and end before `high`.
        var low: UInt64
        var high: UInt64
    }

    private func extentNode(_ bytes: [UInt8], capacity: Int, expectedDepth: Int?, inode: Inode, low: UInt64, high: UInt64,
                            blockNumber: UInt64?) throws(QBError) -> ExtentNode {
        guard bytes.le16(0) == 0xF30A else { throw QBError(.malformed, "inode \(inode.number): bad extent header magic") }
        let entries = Int(bytes.le16(2)), max = Int(bytes.le16(4)), depth = Int(bytes.le16(6))
        guard max >= 1, max <= capacity, entries <= max else {
            throw QBError(.malformed, "inode \(inode.number): extent node claims \(entries) of \(max) entries in room for \(capacity)")
        }
        guard depth <= Self.maxExtentDepth, expectedDepth == nil || depth == expectedDepth else {
            throw QBError(.malformed, "inode \(inode.number): extent tree depth \(depth) is invalid")
        }
        if let blockNumber, hasMetadataChecksums, options.verifyChecksums {
            // The tail follows eh_max entries, not eh_entries.
            let end = 12 + 12 * max
            guard end + 4 <= bytes.count else { throw QBError(.malformed, "inode \(inode.number): extent block has no room for its checksum") }
            let crc = CRC32C.update(inode.checksumSeed, bytes[0..<end])
            guard crc == bytes.le32(end) else {
                throw QBError(.malformed, "inode \(inode.number): extent block \(blockNumber) checksum does not match")
            }
        }
        return ExtentNode(bytes: bytes, entries: entries, depth: depth, low: low, high: high)
    }

    private func walkExtents(_ inode: Inode, fileBlocks: UInt64, claims: BlockClaims?,
                             _ body: (DataRun) throws(QBError) -> Void) throws(QBError) {
        let limit: UInt64 = 1 << 32
        var stack = [try extentNode(inode.blockArea, capacity: 4, expectedDepth: nil, inode: inode, low: 0, high: limit, blockNumber: nil)]
        var nextLogical: UInt64 = 0
        while !stack.isEmpty {
            let top = stack.count - 1
            let i = stack[top].next
            if i >= stack[top].entries { stack.removeLast(); continue }
            stack[top].next += 1
            let node = stack[top]
            let at = 12 + 12 * i
            let first = UInt64(node.bytes.le32(at))
            guard first >= node.low, first < node.high, first >= nextLogical || node.depth > 0 else {
                throw QBError(.malformed, "inode \(inode.number): extents out of order at logical block \(first)")
            }
            // Nothing at or past the file's last block is read: the walk
            // ends at the file's size, however much the tree maps.
            if first >= fileBlocks { return }
            if node.depth == 0 {
                let rawLength = UInt64(node.bytes.le16(at + 4))
                let unwritten = rawLength > 32768
                let length = unwritten ? rawLength - 32768 : rawLength
                let physical = UInt64(node.bytes.le16(at + 6)) << 32 | UInt64(node.bytes.le32(at + 8))
                guard length > 0, first + length <= node.high else {
                    throw QBError(.malformed, "inode \(inode.number): extent at logical block \(first) has an invalid length")
                }
                try checkBlocks(physical, count: length, what: "inode \(inode.number)'s extent")
                nextLogical = first + length
                let count = min(length, fileBlocks - first)
                try claims?.claim(physical, count: count, data: true, inode: inode.number)
                try body(DataRun(logical: first, physical: physical, count: count, unwritten: unwritten))
            } else {
                // An index entry covers up to the next entry's start (or the parent's end).
                let high = i + 1 < node.entries ? UInt64(node.bytes.le32(at + 12)) : node.high
                guard high > first, first >= nextLogical else {
                    throw QBError(.malformed, "inode \(inode.number): extent index out of order at logical block \(first)")
                }
                let child = UInt64(node.bytes.le16(at + 8)) << 32 | UInt64(node.bytes.le32(at + 4))
                try checkBlocks(child, what: "inode \(inode.number)'s extent index")
                try chargeMappingWork()
                try claims?.claim(child, count: 1, data: false, inode: inode.number)
                let bytes = try block(child, what: "inode \(inode.number)'s extent index")
                stack.append(try extentNode(bytes, capacity: (blockSize - 12) / 12, expectedDepth: node.depth - 1, inode: inode,
                                            low: first, high: high, blockNumber: child))
            }
        }
    }

    // MARK: - Block maps (ext2/ext3)

    private func walkBlockMap(_ inode: Inode, fileBlocks: UInt64, claims: BlockClaims?,
                              _ body: (DataRun) throws(QBError) -> Void) throws(QBError) {
        var pending: DataRun?
        func emit(_ logical: UInt64, _ physical: UInt64) throws(QBError) {
            try claims?.claim(physical, count: 1, data: true, inode: inode.number)
            if var run = pending, run.logical + run.count == logical, run.physical + run.count == physical {
                run.count += 1
                pending = run
                return
            }
            if let run = pending { try body(run) }
            pending = DataRun(logical: logical, physical: physical, count: 1, unwritten: false)
        }
        let perBlock = blockSize / 4
        let p = UInt64(perBlock)
        // Logical blocks covered by one pointer at each level: 1, p, p², p³.
        let span: [UInt64] = [1, p, p * p, p * p * p]
        var logical: UInt64 = 0
        func descend(_ pointer: UInt64, level: Int) throws(QBError) {
            if logical >= fileBlocks { return }
            if pointer == 0 { logical += span[level]; return }
            try checkBlocks(pointer, what: "inode \(inode.number)'s block map")
            if level == 0 {
                try emit(logical, pointer)
                logical += 1
                return
            }
            try chargeMappingWork()
            try claims?.claim(pointer, count: 1, data: false, inode: inode.number)
            let table = try block(pointer, what: "inode \(inode.number)'s indirect block")
            var i = 0
            while i < perBlock, logical < fileBlocks {
                // Runs of zero pointers (holes) are passed over a word at a
                // time: an all-zero table costs one scan, not one step per
                // block it could have mapped.
                let next = Self.nextNonzeroEntry(table, from: i, count: perBlock)
                logical += UInt64(next - i) * span[level - 1]
                i = next
                if i == perBlock { break }
                try descend(UInt64(table.le32(4 * i)), level: level - 1)
                i += 1
            }
        }
        for i in 0..<15 {
            let level = i < 12 ? 0 : i - 11
            try descend(UInt64(inode.blockArea.le32(4 * i)), level: level)
        }
        if let run = pending { try body(run) }
    }

    /// The index of the first nonzero 32-bit entry at or after `start` in
    /// the first `count` entries of `table`, or `count`.
    static func nextNonzeroEntry(_ table: [UInt8], from start: Int, count: Int) -> Int {
        table.withUnsafeBytes { raw -> Int in
            var i = start
            // Two entries per 64-bit load once aligned.
            while i < count && i & 1 != 0 {
                if raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) != 0 { return i }
                i += 1
            }
            while i + 2 <= count {
                let pair = raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt64.self)
                if pair != 0 {
                    return raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) != 0 ? i : i + 1
                }
                i += 2
            }
            if i < count, raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) != 0 { return i }
            return count
        }
    }
}
