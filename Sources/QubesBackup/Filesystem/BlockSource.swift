import Synchronization

/// Where a filesystem's blocks come from. The sources stack, and every
/// parser reads through the top of the stack only:
///
///     image window → journal-replayed view → cache → superblock, descriptors,
///                                                     inodes, extents, directories
///
/// as e2fsprogs' io_manager layers and ext4-view's `Ext4Read` do. The cache
/// is built after the replay, so nothing read before the journal was
/// replayed (the journal inode's own group descriptor and inode-table block)
/// can be served stale afterwards.
protocol BlockSource: AnyObject, Sendable {
    var blockSize: Int { get }
    /// Blocks that can be read: those inside the image window, whatever
    /// the superblock claims.
    var blockCount: UInt64 { get }
    /// Block `number`, `blockSize` bytes.
    func block(_ number: UInt64) throws(QBError) -> [UInt8]
    /// The `count` blocks from `first`, in order, as stretches that can be
    /// copied straight from the image and blocks held in memory: file data
    /// is copied without passing through Swift arrays where the image holds
    /// it as it is.
    func forEachSegment(_ first: UInt64, count: UInt64, _ body: (BlockSegment) throws(QBError) -> Void) throws(QBError)
}

/// A stretch of consecutive blocks, as `BlockSource.forEachSegment` gives it.
enum BlockSegment {
    /// `count` blocks from `block`, as they are in the image window.
    case image(block: UInt64, count: UInt64)
    /// One block whose contents differ from the image's (a replayed journal copy).
    case bytes(block: UInt64, [UInt8])
}

extension BlockSource {
    /// Checks `count` blocks from `first` against the blocks that exist.
    func checkRange(_ first: UInt64, count: UInt64) throws(QBError) {
        guard count <= blockCount, first <= blockCount - count else {
            throw QBError(.truncated, "block \(first)\(count > 1 ? "+\(count)" : "") is past the end of the image (\(blockCount) blocks)")
        }
    }
}

/// The bottom of the stack: blocks read from the image window with pread.
final class ImageBlocks: BlockSource {
    let window: ImageWindow
    let blockSize: Int
    let blockCount: UInt64

    init(window: ImageWindow, blockSize: Int) {
        self.window = window
        self.blockSize = blockSize
        blockCount = UInt64(window.length) / UInt64(blockSize)
    }

    func block(_ number: UInt64) throws(QBError) -> [UInt8] {
        try checkRange(number, count: 1)
        return try window.read(at: Int64(number) * Int64(blockSize), count: blockSize)
    }

    func forEachSegment(_ first: UInt64, count: UInt64, _ body: (BlockSegment) throws(QBError) -> Void) throws(QBError) {
        try checkRange(first, count: count)
        if count > 0 { try body(.image(block: first, count: count)) }
    }
}

/// The image as the journal's committed transactions leave it: a block the
/// replay replaced is read from its newest journal copy, every other block
/// from the image. The image is never written.
final class ReplayedBlocks: BlockSource {
    let below: ImageBlocks
    let overlay: JournalOverlay
    /// The journal inode's data runs, read before the replay: where journal
    /// block i lies in the image.
    let journalRuns: [DataRun]

    var blockSize: Int { below.blockSize }
    var blockCount: UInt64 { below.blockCount }

    init(below: ImageBlocks, overlay: JournalOverlay, journalRuns: [DataRun]) {
        self.below = below
        self.overlay = overlay
        self.journalRuns = journalRuns
    }

    /// Journal block `index` (0 is the journal's superblock), from the image.
    static func journalBlock(_ index: UInt64, runs: [DataRun], image: ImageBlocks) throws(QBError) -> [UInt8] {
        var low = 0, high = runs.count
        while low < high {
            let mid = (low + high) / 2
            if runs[mid].logical + runs[mid].count <= index { low = mid + 1 } else { high = mid }
        }
        guard low < runs.count, runs[low].logical <= index, !runs[low].unwritten else {
            throw QBError(.malformed, "journal block \(index) is a hole in the journal inode")
        }
        return try image.block(runs[low].physical + (index - runs[low].logical))
    }

    private func replaced(_ number: UInt64) throws(QBError) -> [UInt8]? {
        try overlay.contents(of: number) { (i: UInt64) throws(QBError) in
            try Self.journalBlock(i, runs: journalRuns, image: below)
        }
    }

    func block(_ number: UInt64) throws(QBError) -> [UInt8] {
        try checkRange(number, count: 1)
        if let bytes = try replaced(number) { return bytes }
        return try below.block(number)
    }

    func forEachSegment(_ first: UInt64, count: UInt64, _ body: (BlockSegment) throws(QBError) -> Void) throws(QBError) {
        try checkRange(first, count: count)
        guard overlay.replacesAny(first, count: count) else {
            if count > 0 { try body(.image(block: first, count: count)) }
            return
        }
        var start = first
        let end = first + count
        for number in first..<end {
            guard let bytes = try replaced(number) else { continue }
            if number > start { try body(.image(block: start, count: number - start)) }
            try body(.bytes(block: number, bytes))
            start = number + 1
        }
        if end > start { try body(.image(block: start, count: end - start)) }
    }
}

/// The top of the stack: metadata blocks kept in memory, up to a byte
/// budget, first in first out, which suits a walk's locality. File data
/// passes through uncached. Safe to share between threads.
final class CachedBlocks: BlockSource {
    let below: BlockSource
    private let state: Mutex<CacheState>

    var blockSize: Int { below.blockSize }
    var blockCount: UInt64 { below.blockCount }

    init(below: BlockSource, bytes: Int) {
        self.below = below
        state = Mutex(CacheState(capacity: max(16, bytes / below.blockSize)))
    }

    func block(_ number: UInt64) throws(QBError) -> [UInt8] {
        if let cached = state.withLock({ $0.blocks[number] }) { return cached }
        let bytes = try below.block(number)
        state.withLock { $0.put(number, bytes) }
        return bytes
    }

    func forEachSegment(_ first: UInt64, count: UInt64, _ body: (BlockSegment) throws(QBError) -> Void) throws(QBError) {
        try below.forEachSegment(first, count: count, body)
    }
}

private struct CacheState: ~Copyable {
    let capacity: Int
    var blocks: [UInt64: [UInt8]] = [:]
    var order: [UInt64] = []
    var head = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func put(_ number: UInt64, _ bytes: [UInt8]) {
        if blocks[number] != nil { return }
        if order.count < capacity {
            order.append(number)
        } else {
            blocks[order[head]] = nil
            order[head] = number
            head = (head + 1) % capacity
        }
        blocks[number] = bytes
    }
}
