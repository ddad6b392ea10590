/// The journal as the reader uses it: replayed in memory when the
/// filesystem needs recovery, consulted on every metadata read.
struct JournalState {
    let overlay: JournalOverlay
    /// The journal inode's data runs, to find journal block i on disk.
    let runs: [DataRun]
    let window: ImageWindow
    let blockSize: Int

    func readJournalBlock(_ index: UInt64) throws(QBError) -> [UInt8] {
        // Binary search for the run holding `index`.
        var low = 0, high = runs.count
        while low < high {
            let mid = (low + high) / 2
            if runs[mid].logical + runs[mid].count <= index { low = mid + 1 } else { high = mid }
        }
        guard low < runs.count, runs[low].logical <= index, !runs[low].unwritten else {
            throw QBError(.malformed, "journal block \(index) is a hole in the journal inode")
        }
        let physical = runs[low].physical + (index - runs[low].logical)
        return try window.read(at: Int64(physical) * Int64(blockSize), count: blockSize)
    }

    func replayedContents(of block: UInt64) throws(QBError) -> [UInt8]? {
        guard overlay.blocks[block] != nil else { return nil }
        return try overlay.contents(of: block) { (i: UInt64) throws(QBError) in try readJournalBlock(i) }
    }

    /// Whether the journal replaced any of `count` blocks from `block`.
    func replacesAny(_ block: UInt64, count: UInt64) -> Bool {
        if overlay.blocks.isEmpty { return false }
        if count <= UInt64(overlay.blocks.count) {
            return (block..<(block + count)).contains { overlay.blocks[$0] != nil }
        }
        return overlay.blocks.keys.contains { $0 >= block && $0 - block < count }
    }
}

extension Ext4Filesystem {
    /// Finds the journal, and replays it when the filesystem needs
    /// recovery and replay is wanted. A journal that cannot be read or
    /// replayed is a problem, not the end: the filesystem is then read as
    /// it is on disk.
    func openJournal() throws(QBError) {
        let sb = superblock
        guard sb.features.compatible.contains(.hasJournal), sb.journalInode != 0 else { return }
        let needsRecovery = sb.features.incompatible.contains(.needsRecovery)
        if needsRecovery && !options.replayJournal {
            journalSummary = "needs recovery; not replayed (--no-journal)"
            return
        }
        do throws(QBError) {
            let journalInode = try inode(sb.journalInode)
            guard journalInode.kind == .regular else { throw QBError(.malformed, "journal inode \(sb.journalInode) is not a regular file") }
            var runs: [DataRun] = []
            try forEachRun(of: journalInode) { (run: DataRun) throws(QBError) in runs.append(run) }
            let journalBlocks = journalInode.size / UInt64(blockSize)
            let state0 = JournalState(overlay: JournalOverlay(), runs: runs, window: window, blockSize: blockSize)
            let read = { (i: UInt64) throws(QBError) -> [UInt8] in try state0.readJournalBlock(i) }
            let journalSB = try JournalReplay.superblock(journalBlocks: journalBlocks, blockSize: blockSize, readJournalBlock: read)
            journalSuperblock = journalSB
            guard needsRecovery else {
                journalSummary = "clean"
                return
            }
            let overlay = try JournalReplay.replay(journalBlocks: journalBlocks, blockSize: blockSize,
                                                   filesystemBlocks: sb.blocksCount, readJournalBlock: read)
            journal = JournalState(overlay: overlay, runs: runs, window: window, blockSize: blockSize)
            journalSummary = "replayed in memory: \(overlay.transactions) transaction\(overlay.transactions == 1 ? "" : "s"), \(overlay.blocks.count) block\(overlay.blocks.count == 1 ? "" : "s")"
            for warning in overlay.warnings { problems.append("journal: " + warning) }
        } catch {
            if !needsRecovery {
                journalSummary = "unreadable (\(error.message))"
                return
            }
            problems.append("journal cannot be replayed: \(error.message); the filesystem is read as it is on disk")
            journalSummary = "needs recovery; replay failed"
        }
    }
}
