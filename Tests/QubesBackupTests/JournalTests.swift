import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// jbd2 replay on real journals written by e2fsprogs' debugfs (`jo`/`jw`/`jc`
/// without `jr`, so the image still needs recovery), checked against what
/// e2fsck writes when it recovers a copy of the same image.
@Suite struct JournalTests {
    /// An image with a journal left for recovery, and the journal inode's data.
    struct Image {
        let scratch: ScratchDirectory
        let image: URL
        var journal: [UInt8]
        let blockSize: Int
        let filesystemBlocks: UInt64
        /// The data files written, by name.
        let data: [String: [UInt8]]

        var journalBlocks: UInt64 { UInt64(journal.count / blockSize) }

        func reader() -> (UInt64) throws(QBError) -> [UInt8] {
            let journal = self.journal, size = blockSize
            return { (i: UInt64) throws(QBError) -> [UInt8] in
                guard i < UInt64(journal.count / size) else {
                    throw QBError(.truncated, "test reader: block \(i) past the journal")
                }
                return Array(journal[Int(i) * size..<(Int(i) + 1) * size])
            }
        }

        func replay(filesystemBlocks: UInt64? = nil) throws(QBError) -> JournalOverlay {
            try JournalReplay.replay(journalBlocks: journalBlocks, blockSize: blockSize,
                                     filesystemBlocks: filesystemBlocks ?? self.filesystemBlocks,
                                     readJournalBlock: reader())
        }

        func contents(_ overlay: JournalOverlay, _ block: UInt64) throws -> [UInt8]? {
            try overlay.contents(of: block, readJournalBlock: reader())
        }

        /// The block as `dd` reads it from `image`.
        func block(_ number: UInt64, of image: URL) throws -> [UInt8] {
            let r = try run("dd", ["if=\(image.path)", "bs=\(blockSize)", "skip=\(number)", "count=1", "status=none"])
            #expect(r.status == 0, "\(r.stderr)")
            return [UInt8](r.stdout)
        }

        /// Blocks of a copy of the image recovered by `e2fsck -fy`.
        func recoveredByE2fsck(_ blocks: [UInt64]) throws -> [UInt64: [UInt8]] {
            let copy = scratch.file("recovered.img")
            try? FileManager.default.removeItem(at: copy)
            try FileManager.default.copyItem(at: image, to: copy)
            let r = try run("e2fsck", ["-fy", copy.path])
            // 0: clean, 1: errors corrected (recovery counts as a change).
            #expect(r.status == 0 || r.status == 1, "e2fsck: \(r.stdoutText) \(r.stderr)")
            var result: [UInt64: [UInt8]] = [:]
            for b in blocks { result[b] = try block(b, of: copy) }
            return result
        }

        /// Replaces journal block `index` with `bytes` (zeros when nil).
        mutating func overwriteJournalBlock(_ index: Int, with bytes: [UInt8]? = nil) {
            let replacement = bytes ?? [UInt8](repeating: 0, count: blockSize)
            journal.replaceSubrange(index * blockSize..<(index + 1) * blockSize, with: replacement)
        }
    }

    static let magic: [UInt8] = [0xC0, 0x3B, 0x39, 0x98]

    /// Random data files: d1 one block starting with the journal magic (so
    /// debugfs must escape it), d2 two blocks, d3 one block.
    static func makeImage(mkfs: [String], script: String, size: String = "32M") throws -> Image {
        let scratch = try ScratchDirectory()
        let image = scratch.file("fs.img")
        var r = try run("mke2fs", ["-q", "-F"] + mkfs + [image.path, size])
        #expect(r.status == 0, "mke2fs: \(r.stderr)")
        let header = try run("dumpe2fs", ["-h", image.path]).stdoutText
        func field(_ name: String) -> Int {
            for line in header.split(separator: "\n") where line.hasPrefix(name + ":") {
                return Int(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) ?? -1
            }
            return -1
        }
        let blockSize = field("Block size"), blockCount = field("Block count")
        var data: [String: [UInt8]] = [:]
        var generator = SystemRandomNumberGenerator()
        for (name, blocks) in [("d1", 1), ("d2", 2), ("d3", 1)] {
            var bytes = (0..<(blocks * blockSize)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if name == "d1" { bytes.replaceSubrange(0..<4, with: magic) }
            data[name] = bytes
            try Data(bytes).write(to: scratch.file(name + ".bin"))
        }
        try script.write(to: scratch.file("script"), atomically: true, encoding: .utf8)
        r = try run("debugfs", ["-w", "-f", "script", image.path], directory: scratch.url)
        #expect(r.status == 0, "debugfs: \(r.stderr)")
        #expect(!r.stderr.contains("rror"), "debugfs: \(r.stderr)")
        r = try run("debugfs", ["-R", "dump <8> \(scratch.file("journal.bin").path)", image.path])
        #expect(r.status == 0, "debugfs dump: \(r.stderr)")
        let journal = [UInt8](try Data(contentsOf: scratch.file("journal.bin")))
        #expect(blockSize >= 1024 && journal.count > 0 && journal.count % blockSize == 0)
        return Image(scratch: scratch, image: image, journal: journal, blockSize: blockSize,
                     filesystemBlocks: UInt64(blockCount), data: data)
    }

    /// Three transactions: 30000 ← d1 (escaped), 30001,30002 ← d2, then 30001
    /// revoked. The blocks are free ones of group 3, which e2fsck's checks leave alone.
    static let threeTransactions = "jo%@\njw -b 30000 d1.bin\njw -b 30001,30002 d2.bin\njw -r 30001\njc\n"

    static func script(_ open: String) -> String { threeTransactions.replacingOccurrences(of: "%@", with: open) }

    /// The overlay of `threeTransactions`, checked block by block against the
    /// data written and against e2fsck's recovery of a copy.
    func checkThreeTransactions(_ image: Image, features: [String]) throws {
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        for f in features { #expect(sb.featureNames.contains(f), "\(sb.featureNames) lacks \(f)") }
        #expect(sb.start != 0)
        let overlay = try image.replay()
        #expect(overlay.transactions == 3)
        #expect(overlay.warnings.isEmpty, "\(overlay.warnings)")
        #expect(Set(overlay.blocks.keys) == [30000, 30002])
        #expect(overlay.blocks[30000]?.escaped == true)
        #expect(overlay.blocks[30002]?.escaped == false)
        #expect(try image.contents(overlay, 30000) == image.data["d1"])
        #expect(try image.contents(overlay, 30002) == Array(image.data["d2"]![image.blockSize...]))
        #expect(try image.contents(overlay, 30001) == nil)

        let recovered = try image.recoveredByE2fsck([30000, 30001, 30002])
        #expect(try image.contents(overlay, 30000) == recovered[30000])
        #expect(try image.contents(overlay, 30002) == recovered[30002])
        // The revoked block keeps its pre-journal contents in e2fsck's copy.
        #expect(try image.block(30001, of: image.image) == recovered[30001])
        #expect(recovered[30001] != Array(image.data["d2"]![..<image.blockSize]))
    }

    @Test func checksumV3SixtyFourBit() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        try checkThreeTransactions(image, features: ["journal_checksum_v3", "journal_64bit", "journal_incompat_revoke"])
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        #expect(sb.checksumDescription == "crc32c (v3)")
        #expect(sb.version == 2 && sb.sequence == 1 && sb.first == 1)
    }

    @Test func checksumV2ThirtyTwoBit() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext4", "-O", "^64bit"], script: Self.script(" -c -v 2"))
        try checkThreeTransactions(image, features: ["journal_checksum_v2"])
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        #expect(!sb.featureNames.contains("journal_64bit"))
        #expect(sb.tagBytes == 10)
    }

    @Test func noChecksumsExt3() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext3"], script: Self.script(""))
        try checkThreeTransactions(image, features: ["journal_incompat_revoke"])
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        #expect(sb.checksumDescription == "none")
    }

    @Test func noChecksumsSixtyFourBit() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(""))
        try checkThreeTransactions(image, features: ["journal_64bit"])
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        #expect(sb.tagBytes == 12 && sb.checksumDescription == "none")
    }

    /// mke2fs reserves the fast-commit area but only the kernel sets the
    /// journal feature at mount; we set it (and re-seal the superblock) to
    /// see the log end before the area and the warning.
    @Test func fastCommitIsNotReplayedButWarned() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext4", "-O", "fast_commit"], script: Self.script(" -c"))
        image.journal[43] |= 0x20
        let sbBytes = Array(image.journal[0..<1024])
        let crc = CRC32C.update(~0, sbBytes.zeroing(0xFC..<0x100))
        image.journal.replaceSubrange(0xFC..<0x100, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        #expect(sb.fastCommitBlocks == 64 && sb.logEnd == sb.maxLength - 64)
        #expect(sb.featureNames.contains("journal_fast_commit"))
        let overlay = try image.replay()
        #expect(overlay.transactions == 3)
        #expect(Set(overlay.blocks.keys) == [30000, 30002])
        #expect(overlay.warnings == ["journal has fast commits; fast-commit updates were not replayed"])
    }

    /// ext3 without metadata_csum: debugfs falls back to checksum v1 (crc32_be
    /// over each transaction's descriptors and data, stored in the commit).
    @Test func checksumV1Ext3() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext3"], script: "jo -c\njw -b 30000 d1.bin\njw -b 30001,30002 d2.bin\njc\n")
        let sb = try JournalReplay.superblock(journalBlocks: image.journalBlocks, blockSize: image.blockSize,
                                              readJournalBlock: image.reader())
        #expect(sb.checksumDescription == "crc32 (v1)")
        let overlay = try image.replay()
        #expect(overlay.transactions == 2 && overlay.warnings.isEmpty, "\(overlay.warnings)")
        #expect(Set(overlay.blocks.keys) == [30000, 30001, 30002])
        let recovered = try image.recoveredByE2fsck([30000, 30001, 30002])
        for b: UInt64 in [30000, 30001, 30002] { #expect(try image.contents(overlay, b) == recovered[b]) }
        #expect(try image.contents(overlay, 30001) == Array(image.data["d2"]![..<image.blockSize]))
        // A changed data byte in transaction 2 breaks its v1 checksum.
        let (_, dataBlock, _) = try layout(image, transaction: 2)
        image.journal[dataBlock * image.blockSize + 100] ^= 1
        let broken = try image.replay()
        #expect(broken.transactions == 1)
        #expect(broken.warnings == ["journal transaction 2 has a bad commit checksum; replay stopped there"])
        #expect(Set(broken.blocks.keys) == [30000])
    }

    /// debugfs counts a revoke block into the v1 checksum, e2fsck's
    /// recovery does not and reports the transaction corrupt; so do we.
    @Test func checksumV1RevokeOnlyTransactionAsE2fsck() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext3"], script: "jo -c\njw -b 30000 d1.bin\njw -r 30000\njc\n")
        let overlay = try image.replay()
        #expect(overlay.transactions == 1)
        #expect(overlay.warnings == ["journal transaction 2 has a bad commit checksum; replay stopped there"])
        let recovered = try image.recoveredByE2fsck([30000])
        #expect(try image.contents(overlay, 30000) == recovered[30000])
        #expect(recovered[30000] == image.data["d1"])
    }

    /// Journal block indexes of a transaction's descriptor, first data block
    /// and commit block, found by walking headers as logdump does.
    func layout(_ image: Image, transaction: UInt32) throws -> (descriptor: Int, data: Int, commit: Int) {
        var descriptor = -1
        for i in 1..<Int(image.journalBlocks) {
            let b = Array(image.journal[i * image.blockSize..<(i + 1) * image.blockSize])
            guard b.be32(0) == 0xC03B_3998, b.be32(8) == transaction else { continue }
            if b.be32(4) == 1, descriptor < 0 { descriptor = i }
            if b.be32(4) == 2 { return (descriptor, descriptor + 1, i) }
        }
        Issue.record("transaction \(transaction) not found")
        return (-1, -1, -1)
    }

    @Test func destroyedCommitBlockEndsTheLog() throws {
        for (mkfs, open) in [(["-t", "ext4"], " -c"), (["-t", "ext3"], "")] {
            var image = try Self.makeImage(mkfs: mkfs, script: Self.script(open))
            let (_, _, commit) = try layout(image, transaction: 2)
            image.overwriteJournalBlock(commit)
            let overlay = try image.replay()
            #expect(overlay.transactions == 1)
            #expect(Set(overlay.blocks.keys) == [30000])
            #expect(try image.contents(overlay, 30000) == image.data["d1"])
            #expect(try image.contents(overlay, 30001) == nil)
        }
    }

    @Test func badCommitChecksumStopsReplay() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        let (_, _, commit) = try layout(image, transaction: 2)
        image.journal[commit * image.blockSize + 0x200] ^= 0xFF
        let overlay = try image.replay()
        #expect(overlay.transactions == 1)
        #expect(overlay.warnings == ["journal transaction 2 has a bad commit checksum; replay stopped there"])
        #expect(Set(overlay.blocks.keys) == [30000])
    }

    @Test func badDataChecksumSkipsTheBlock() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        let (_, data, _) = try layout(image, transaction: 2)
        // The copy of block 30002 (second data block of transaction 2).
        image.journal[(data + 1) * image.blockSize + 7] ^= 1
        let overlay = try image.replay()
        #expect(overlay.transactions == 3)
        #expect(overlay.warnings == ["journal transaction 2 has a bad checksum for block 30002; that block was not replayed"])
        #expect(Set(overlay.blocks.keys) == [30000])
    }

    @Test func newestCopyWins() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext4"], script: "jo -c\njw -b 30100 d1.bin\njw -b 30100 d3.bin\njc\n")
        let overlay = try image.replay()
        #expect(overlay.transactions == 2)
        #expect(try image.contents(overlay, 30100) == image.data["d3"])
        let recovered = try image.recoveredByE2fsck([30100])
        #expect(try image.contents(overlay, 30100) == recovered[30100])
    }

    @Test func cleanJournalIsEmpty() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext4"], script: "jo -c\njw -b 30000 d1.bin\njc\njr\n")
        let overlay = try image.replay()
        #expect(overlay.blocks.isEmpty && overlay.transactions == 0 && overlay.warnings.isEmpty)
    }

    /// The ext3 (checksum-free) log rotated within the circular area so
    /// transaction 1 starts two blocks before its end and wraps to s_first.
    @Test func logWrapsAround() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext3"], script: Self.script(""))
        let bs = image.blockSize
        let sbBlock = Array(image.journal[0..<bs])
        let first = Int(sbBlock.be32(20)), last = Int(sbBlock.be32(16)), start = Int(sbBlock.be32(28))
        #expect(start == first)
        let length = last - first, k = length - 2
        var rotated = image.journal
        for p in first..<last {
            let q = first + (p - first + k) % length
            rotated.replaceSubrange(q * bs..<(q + 1) * bs, with: image.journal[p * bs..<(p + 1) * bs])
        }
        let newStart = UInt32(first + k)
        rotated.replaceSubrange(28..<32, with: [UInt8(newStart >> 24), UInt8(newStart >> 16 & 0xFF),
                                                UInt8(newStart >> 8 & 0xFF), UInt8(newStart & 0xFF)])
        let original = try image.replay()
        image.journal = rotated
        let overlay = try image.replay()
        #expect(overlay.transactions == 3)
        #expect(Set(overlay.blocks.keys) == [30000, 30002])
        #expect(overlay.blocks[30000]?.journalBlock == UInt64(last - 1))  // descriptor at last-2, data at last-1
        #expect(try image.contents(overlay, 30000) == image.data["d1"])
        #expect(try image.contents(overlay, 30002) == Array(image.data["d2"]![bs...]))
        #expect(original.blocks[30002]?.journalBlock != overlay.blocks[30002]?.journalBlock)
    }

    // MARK: refusals

    func expectRefusal(_ image: Image, filesystemBlocks: UInt64? = nil, _ kind: QBError.Kind, _ description: String) {
        do {
            let overlay = try image.replay(filesystemBlocks: filesystemBlocks)
            Issue.record("accepted: \(overlay.blocks.count) blocks")
        } catch {
            #expect(error.kind == kind)
            #expect(error.description == description)
        }
    }

    @Test func refusesBadSuperblockMagic() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        image.journal[0] ^= 0xFF
        expectRefusal(image, .malformed,
                      "journal: journal superblock has a bad magic number (the journal inode does not hold a jbd2 journal)")
    }

    @Test func refusesUnknownIncompatibleFeature() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        image.journal[43] |= 0x40
        image.journal[42] |= 0x01
        expectRefusal(image, .unsupported, "journal: journal has unknown incompatible features 0x40, 0x100")
    }

    @Test func refusesBadSuperblockChecksum() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        image.journal[0x60] ^= 1
        expectRefusal(image, .malformed, "journal: journal superblock checksum does not match")
    }

    @Test func refusesTargetPastTheFilesystem() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext4"], script: Self.script(" -c"))
        expectRefusal(image, filesystemBlocks: 30001, .malformed,
                      "journal: journal transaction 2 writes block 30001, past the filesystem's 30001 blocks")
        // At the limit the same journal is accepted.
        #expect(try image.replay(filesystemBlocks: 30003).blocks.count == 2)
    }

    @Test func refusesJournalLongerThanItsInode() throws {
        let image = try Self.makeImage(mkfs: ["-t", "ext3"], script: Self.script(""))
        do {
            _ = try JournalReplay.replay(journalBlocks: image.journalBlocks - 1, blockSize: image.blockSize,
                                         filesystemBlocks: image.filesystemBlocks, readJournalBlock: image.reader())
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .malformed)
            #expect(error.description == "journal: journal claims \(image.journalBlocks) blocks but its inode holds \(image.journalBlocks - 1)")
        }
    }

    /// A descriptor whose tags claim every block of the log, in a loop, must
    /// end (the log goes around at most once) without trapping.
    @Test func hostileDescriptorsTerminate() throws {
        var image = try Self.makeImage(mkfs: ["-t", "ext3"], script: Self.script(""))
        let bs = image.blockSize
        // Every log block a descriptor of transaction 1 with one tag.
        var descriptor = [UInt8](repeating: 0, count: bs)
        descriptor.replaceSubrange(0..<12, with: Self.magic + [0, 0, 0, 1, 0, 0, 0, 1])
        descriptor.replaceSubrange(12..<20, with: [0, 0, 0, 200, 0, 0, 0, 0x0A])  // SAME_UUID | LAST_TAG
        for i in 1..<Int(image.journalBlocks) { image.overwriteJournalBlock(i, with: descriptor) }
        let overlay = try image.replay()
        #expect(overlay.transactions == 0 && overlay.blocks.isEmpty)
        #expect(overlay.warnings == ["journal log runs longer than the journal; replay stopped at transaction 1"])
    }
}
