/// The ext2/3/4 filesystem of an image that passes by in a backup's stream
/// (a VM's private.img), read without the image ever being written: the
/// same reader as for an image file, over a `StreamedImage` that keeps
/// what the reader needs.
///
/// What is needed is learnt while the image passes, with the reader's own
/// parsers: the partition table and superblock first, then the group
/// descriptors, whose inode tables are then kept as they pass; each inode
/// is parsed as its table passes, and the blocks it points at (a
/// directory's, a slow symbolic link's, the journal's when it needs
/// replay, the extent and indirect blocks of every file) are kept when they
/// pass later in the same pass. A block that passed before anything said
/// it was needed is kept in the next pass over the backup: a step that met
/// a block not kept waits for it, and runs again when it is kept.
///
/// After a pass, the filesystem is opened as for an image file (journal
/// replayed) and walked without output: if the walk met nothing that was
/// not kept, the reader is complete and gives what `qb-fs` gives for the
/// restored image.
public final class StreamedFilesystem: @unchecked Sendable {
    // @unchecked: discovery runs on the thread that feeds the image, the
    // walks after that thread's pass ended (joined); never at once.

    public let image: StreamedImage
    public let partition: Int?
    public let options: Ext4Filesystem.Options

    private enum Task {
        case locate
        case group(UInt32)
        case table(group: UInt32, block: UInt64)
        case inode(UInt32)

        var isLocate: Bool { if case .locate = self { true } else { false } }
    }

    private var location: FilesystemLocation?
    /// The filesystem as it is in the image, journal not replayed: what
    /// discovery parses while the image passes.
    private var discovery: Ext4Filesystem?
    private var waiting: [UInt64: [Task]] = [:]
    /// The pages in `waiting`, in increasing order.
    private var waitingPages: [UInt64] = []
    /// Why the image cannot be read at all (no filesystem, a foreign one),
    /// once a whole pass has shown it.
    public private(set) var failure: QBError?

    /// `partition` as qb-fs's --partition; none finds the filesystem as qb-fs does.
    public init(image: StreamedImage, partition: Int? = nil, options: Ext4Filesystem.Options) {
        self.image = image
        self.partition = partition
        self.options = options
        // A partition table (MBR and GPT at the start, the backup GPT at
        // the end) and a bare filesystem's superblock and first descriptors.
        image.want(0, count: Int(min(image.size, 1 << 20)))
        image.want(max(0, image.size - (1 << 20)), count: Int(min(image.size, 1 << 20)))
        image.settled = { [unowned self] page in self.settled(below: page) }
        run(.locate)
    }

    // MARK: - Discovery, while the image passes

    /// Runs the steps that waited for pages the stream has now passed:
    /// kept, or holes; a step that misses them again waits for the next pass.
    private func settled(below page: UInt64) {
        while let first = waitingPages.first, first < page {
            waitingPages.removeFirst()
            for task in waiting.removeValue(forKey: first) ?? [] { run(task) }
        }
    }

    private func wait(_ task: Task, for page: UInt64) {
        if waiting[page] == nil {
            var low = 0, high = waitingPages.count
            while low < high {
                let mid = (low + high) / 2
                if waitingPages[mid] < page { low = mid + 1 } else { high = mid }
            }
            waitingPages.insert(page, at: low)
        }
        waiting[page, default: []].append(task)
    }

    /// Runs a step; a step that met a page not kept waits for it. A step
    /// commits nothing when it missed a page: it runs again whole.
    private func run(_ task: Task) {
        let before = image.misses
        var next: [Task] = []
        do {
            try perform(task, complete: { image.misses == before }, then: &next)
        } catch {
            // Damage is for the final walk to report; a locate that failed
            // with everything it read at hand is final once a pass is whole.
        }
        // Wait for the first of the missing pages to pass again: the
        // earliest still ahead in this pass, else the first of the next.
        let missing = image.takeMissing()
        let ahead = missing.filter { !image.passed(Int64($0) * Int64(StreamedImage.pageSize)) }
        if let page = ahead.min() ?? missing.min(), location == nil || !task.isLocate {
            wait(task, for: page)
        }
        // Steps a step made run after it, each with misses of its own.
        for task in next { run(task) }
    }

    private func perform(_ task: Task, complete: () -> Bool, then next: inout [Task]) throws(QBError) {
        switch task {
        case .locate:
            // The backup GPT at the end of the image passes last; when the
            // table is whole without it and a superblock is where it says,
            // that is taken now (and checked again when the pass is whole).
            let table = try PartitionTable.read(from: image)
            let found = try FilesystemLocator.locate(in: image, table: table, partition: partition)
            let before = image.misses
            let raw = try found.window.read(at: Superblock.offset, count: Superblock.size)
            guard image.misses == before else { return }
            let superblock = try Superblock(raw, filesystemBytes: found.window.length)
            location = found
            // The first MiB of the filesystem, as of a bare image: its
            // descriptors and bitmaps, and with mke2fs's layout the journal's
            // first blocks, which come before the inode that says where it is.
            image.want(found.window.start, count: Int(min(found.window.length, 1 << 20)))
            // Cached: every inode of a table block reads that block and its
            // group's descriptors. A page is cached only once kept, and a
            // kept page never changes.
            let blocks = CachedBlocks(below: ImageBlocks(window: found.window, blockSize: superblock.blockSize), bytes: 4 << 20)
            let fs = Ext4Filesystem(window: found.window, superblock: superblock, blocks: blocks, options: options)
            discovery = fs
            for index in 0..<superblock.descriptorBlockCount {
                want(fs, superblock.descriptorBlockLocation(index), count: 1)
            }
            next += (0..<superblock.groupCount).map { Task.group($0) }
            if superblock.features.compatible.contains(.hasJournal), superblock.journalInode != 0 {
                next.append(.inode(superblock.journalInode))
            }
        case .group(let group):
            guard let fs = discovery else { return }
            let sb = fs.superblock
            let descriptor = try fs.groupDescriptor(group)
            guard complete(), descriptor.flags & GroupDescriptor.inodeTableUninitialized == 0 else { return }
            let used = UInt64(sb.inodesPerGroup - min(descriptor.unusedInodes, sb.inodesPerGroup))
            let blocks = (used * UInt64(sb.inodeSize) + UInt64(sb.blockSize) - 1) / UInt64(sb.blockSize)
            guard blocks > 0, descriptor.inodeTable < sb.blocksCount, blocks <= sb.blocksCount - descriptor.inodeTable else { return }
            want(fs, descriptor.inodeTable, count: blocks)
            next += (0..<blocks).map { Task.table(group: group, block: $0) }
        case .table(let group, let block):
            guard let fs = discovery else { return }
            let sb = fs.superblock
            let descriptor = try fs.groupDescriptor(group)
            _ = try fs.block(descriptor.inodeTable + block, what: "group \(group)'s inode table")
            guard complete() else { return }
            let perBlock = UInt64(sb.blockSize / sb.inodeSize)
            let first = UInt64(group) * UInt64(sb.inodesPerGroup) + block * perBlock + 1
            for number in first..<(first + perBlock) where number <= UInt64(sb.inodesCount) {
                next.append(.inode(UInt32(number)))
            }
        case .inode(let number):
            guard let fs = discovery else { return }
            let sb = fs.superblock
            let inode: Inode
            do {
                inode = try fs.inode(number)
            } catch {
                // Not in use, or damaged: nothing to keep for it.
                return
            }
            guard !inode.hasInlineData else { return }
            let isJournal = number == sb.journalInode && sb.features.compatible.contains(.hasJournal)
            // The journal is read whole only to be replayed; otherwise its
            // first block, its superblock, is read for --info's line.
            let replayed = isJournal && sb.features.incompatible.contains(.needsRecovery) && options.replayJournal
            let keep: (DataRun) -> Bool
            switch inode.kind {
            case .directory: keep = { _ in !inode.isEncrypted }
            case .symbolicLink: keep = { $0.logical == 0 && inode.size >= UInt64(inode.blockArea.count) }
            case .regular: keep = { replayed || (isJournal && $0.logical == 0) }
            default: return
            }
            // Every file's map is read by the walk (each block is claimed
            // once): its extent and indirect blocks are kept, and are what
            // this may miss; its data only where the reader reads it. Runs
            // are wanted as they are found: a block map's direct blocks
            // come before its indirect block in the image, and would have
            // passed by the time it does.
            try fs.forEachRun(of: inode) { (run: DataRun) throws(QBError) in
                if keep(run) { want(fs, run.physical, count: isJournal && !replayed ? 1 : run.count) }
            }
        }
    }

    private func want(_ fs: Ext4Filesystem, _ block: UInt64, count: UInt64) {
        let bs = Int64(fs.superblock.blockSize)
        guard let window = location?.window, block < UInt64(Int64.max / bs), count < UInt64(Int.max / Int(bs)) else { return }
        let start = Int64(block) * bs
        guard start < window.length else { return }
        let bytes = min(Int64(count) * bs, window.length - start)
        image.want(window.start + start, count: Int(bytes))
    }

    // MARK: - After a pass

    /// Whether the pass that just ended gave everything a walk of `roots`
    /// reads; when not, what was missing is wanted in the next pass. Sets
    /// `failure` when the image holds no filesystem this reader reads.
    public func walkable(roots: [String]) -> Bool {
        let before = image.misses
        if location == nil {
            run(.locate)
            if location == nil {
                if image.misses == before {
                    failure = failure ?? locateError()
                    return true
                }
                return false
            }
        } else if let located = location?.window.start, let now = try? locateNow(), now != located {
            // Found early without the backup GPT, and wrongly: start over.
            location = nil
            discovery = nil
            waiting = [:]
            waitingPages = []
            run(.locate)
            return false
        }
        do {
            let fs = try open()
            try fs.walk(roots: roots, visit: { (_: FileNode) throws(QBError) -> Bool in true }, damaged: { _ in })
        } catch {
            // A root not found, or the superblock refused: the final open
            // and walk report it, once nothing is missing.
        }
        _ = image.takeMissing()
        return image.misses == before
    }

    /// Where the filesystem is, now that the whole image has passed once.
    private func locateNow() throws(QBError) -> Int64 {
        let table = try PartitionTable.read(from: image)
        return try FilesystemLocator.locate(in: image, table: table, partition: partition).window.start
    }

    private func locateError() -> QBError {
        do {
            let table = try PartitionTable.read(from: image)
            _ = try FilesystemLocator.locate(in: image, table: table, partition: partition)
            return QBError(.internalError, "the filesystem was found only after the image had passed", subject: image.path)
        } catch {
            return error
        }
    }

    /// The filesystem, opened as for an image file: the journal replayed,
    /// the superblock read again after it.
    public func open() throws(QBError) -> Ext4Filesystem {
        if let failure { throw failure }
        guard let location else { throw QBError(.internalError, "the filesystem was not found in the stream", subject: image.path) }
        return try Ext4Filesystem(window: location.window, options: options)
    }

    /// Where the filesystem lies in the image.
    public var window: ImageWindow? { location?.window }
}
