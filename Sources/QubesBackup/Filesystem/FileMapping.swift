/// A stretch of a file's logical blocks and where they are on disk.
struct DataRun: Sendable, Equatable {
    var logical: UInt64
    var physical: UInt64
    var count: UInt64
    /// Allocated but never written (fallocate): reads as zeros.
    var unwritten: Bool
}

extension Ext4Filesystem {
    /// The extent tree's deepest legal level (the kernel's EXT4_MAX_EXTENT_DEPTH).
    static let maxExtentDepth = 5

    /// Calls `body` with the file's data runs in increasing logical order,
    /// up to the block that holds its last byte; holes are the gaps
    /// between runs. Every block number is checked against the filesystem,
    /// extent trees are walked with an explicit stack, bounded in depth,
    /// and must increase strictly, so a hostile tree can neither loop nor
    /// make the walk revisit blocks.
    func forEachRun(of inode: Inode, _ body: (DataRun) throws(QBError) -> Void) throws(QBError) {
        let blocks = (inode.size + UInt64(blockSize) - 1) / UInt64(blockSize)
        if blocks == 0 { return }
        // i_blocks counts every block the inode owns; a map that reaches
        // more blocks is lying (and could make a small image expand into
        // terabytes of output by pointing at one block again and again).
        let owned = min(inode.blocks / UInt64(blockSize / 512), superblock.blocksCount)
        var mapped: UInt64 = 0
        let checked = { (run: DataRun) throws(QBError) in
            mapped += run.count
            guard mapped <= owned else {
                throw QBError(.malformed, "inode \(inode.number) maps more blocks than the \(owned) it owns")
            }
            try body(run)
        }
        if inode.usesExtents {
            try walkExtents(inode, fileBlocks: blocks, checked)
        } else {
            try walkBlockMap(inode, fileBlocks: blocks, checked)
        }
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

    private func walkExtents(_ inode: Inode, fileBlocks: UInt64, _ body: (DataRun) throws(QBError) -> Void) throws(QBError) {
        let limit: UInt64 = 1 << 32
        var stack = [try extentNode(inode.blockArea, capacity: 4, expectedDepth: nil, inode: inode, low: 0, high: limit, blockNumber: nil)]
        var nextLogical: UInt64 = 0
        var visited = 0
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
            if first >= fileBlocks { continue }
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
                try body(DataRun(logical: first, physical: physical, count: count, unwritten: unwritten))
            } else {
                // An index entry covers up to the next entry's start (or the parent's end).
                let high = i + 1 < node.entries ? UInt64(node.bytes.le32(at + 12)) : node.high
                guard high > first, first >= nextLogical else {
                    throw QBError(.malformed, "inode \(inode.number): extent index out of order at logical block \(first)")
                }
                let child = UInt64(node.bytes.le16(at + 8)) << 32 | UInt64(node.bytes.le32(at + 4))
                visited += 1
                // Each node read must make progress; more nodes than the
                // filesystem has blocks means a shared (looping) tree.
                guard UInt64(visited) <= superblock.blocksCount else {
                    throw QBError(.malformed, "inode \(inode.number): extent tree visits more nodes than the filesystem has blocks")
                }
                let bytes = try block(child, what: "inode \(inode.number)'s extent index")
                stack.append(try extentNode(bytes, capacity: (blockSize - 12) / 12, expectedDepth: node.depth - 1, inode: inode,
                                            low: first, high: high, blockNumber: child))
            }
        }
    }

    // MARK: - Block maps (ext2/ext3)

    private func walkBlockMap(_ inode: Inode, fileBlocks: UInt64, _ body: (DataRun) throws(QBError) -> Void) throws(QBError) {
        var pending: DataRun?
        func emit(_ logical: UInt64, _ physical: UInt64) throws(QBError) {
            if var run = pending, run.logical + run.count == logical, run.physical + run.count == physical {
                run.count += 1
                pending = run
                return
            }
            if let run = pending { try body(run) }
            pending = DataRun(logical: logical, physical: physical, count: 1, unwritten: false)
        }
        let perBlock = UInt64(blockSize / 4)
        // Logical blocks covered by one pointer at each level: 1, p, p², p³.
        let span: [UInt64] = [1, perBlock, perBlock * perBlock, perBlock * perBlock * perBlock]
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
            let table = try block(pointer, what: "inode \(inode.number)'s indirect block")
            for i in 0..<Int(perBlock) {
                if logical >= fileBlocks { return }
                try descend(UInt64(table.le32(4 * i)), level: level - 1)
            }
        }
        for i in 0..<15 {
            let level = i < 12 ? 0 : i - 11
            try descend(UInt64(inode.blockArea.le32(4 * i)), level: level)
        }
        if let run = pending { try body(run) }
    }
}
