import Foundation
import Testing
import QBTestSupport

/// qb-fs on images made by the real mke2fs, debugfs and sfdisk from one
/// source tree (Tests/Fixtures/ext): every image kind extracts to exactly
/// the source (contents, sizes, holes, modes, symlink targets, hard links,
/// mtimes), and every damaged one ends with status 3, one line per damaged
/// file, and the rest extracted.
@Suite(.serialized) struct FilesystemToolTests {
    static let scripts = ExtImages.scripts
    static var tree: URL { ExtImages.tree }

    /// Every kind make-image.sh offers, which must all be tested below.
    static let kinds: [String] = {
        let listed = try! run("/bin/bash", [scripts.appendingPathComponent("make-image.sh").path, "--list"])
        return listed.stdoutText.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
    }()

    static let cleanKinds = ["ext2", "ext3", "ext4", "ext4-1k", "ext4-64k", "ext4-no64", "ext4-inline", "ext4-seed",
                             "ext4-htree", "ext4-128", "ext4-casefold", "ext4-bigalloc", "ext4-bigalloc-1k", "ext4-meta-bg",
                             "ext3-no-filetype", "ext4-huge-dir", "dir-before-inode", "gpt", "mbr"]
    static let specialKinds = ["unwritten", "dirty-journal", "cycle", "corrupt-inode", "huge-size", "journal-root",
                               "journal-resize", "external-journal", "long-symlink", "shared-blocks", "links-count-1",
                               "blockmap-bomb"]

    /// Image `kind` in `dir`, made once for every test and test run.
    static func image(_ kind: String, in dir: ScratchDirectory) throws -> URL { try ExtImages.image(kind, in: dir) }

    static func compare(_ extracted: URL, _ options: [String] = []) throws -> RunResult {
        try run("python3", [scripts.appendingPathComponent("compare-tree.py").path, "--no-special", "--skip-root",
                            "--extra", "lost+found"] + options + [tree.path, extracted.path])
    }

    static func expected(_ img: URL) throws -> [String: String] {
        let text = try String(contentsOf: URL(fileURLWithPath: img.path + ".expected"), encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return values
    }

    @Test func everyImageKindIsTested() {
        #expect(Self.kinds.count >= 30, "\(Self.kinds)")
        #expect(Set(Self.kinds) == Set(Self.cleanKinds + Self.specialKinds))
    }

    @Test(arguments: cleanKinds)
    func extractsExactlyTheSourceTree(kind: String) throws {
        let dir = try ScratchDirectory()
        let img = try Self.image(kind, in: dir)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 0, "\(kind): \(r.stderr)")
        #expect(r.stderr.isEmpty, "\(kind): \(r.stderr)")
        var skip: [String] = []
        if kind == "ext4-inline" {
            // mke2fs -d with inline_data records a file that ends in a hole
            // with the size of its data only (1.47.0); the image itself says
            // so, and qb-fs gives what the image says (checked below).
            skip = ["--skip", "sparse/hole-end", "--skip", "sparse/dd-seek"]
            for path in ["sparse/hole-end", "sparse/dd-seek"] {
                let stat = try run("debugfs", ["-R", "stat /\(path)", img.path])
                let size = stat.stdoutText.components(separatedBy: "Size: ").dropFirst().first?.prefix { $0.isNumber }
                let extracted = try FileManager.default.attributesOfItem(atPath: dir.file("out/\(path)").path)[.size] as? Int
                #expect(size.map { Int($0) } == extracted, "\(path)")
            }
        }
        let compared = try Self.compare(dir.file("out"), skip)
        #expect(compared.status == 0, "\(kind): \(compared.stdoutText)")
        #expect(!dir.listing().contains { $0.contains(".qb-tmp") })
    }

    @Test func listingNamesEveryFile() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("ext4", in: dir)
        let listed = try run("qb-fs", ["-t", img.path])
        #expect(listed.status == 0, "\(listed.stderr)")
        let names = Set(listed.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init))
        let found = try run("find", [".", "-mindepth", "1", "-printf", "%P\\0"], directory: Self.tree)
        let expected = Set(found.stdoutText.split(separator: "\0").map(String.init))
        // Names with a newline span two lines of a plain listing, as with tar -t.
        #expect(expected.filter { !$0.contains("\n") }.isSubset(of: names))
        #expect(names.contains("lost+found"))
        let long = try run("qb-fs", ["-tv", img.path, "/links"])
        #expect(long.status == 0)
        let symlinks = try run("qb-fs", ["-tv", img.path, "symlinks"])
        #expect(symlinks.stdoutText.contains(" symlinks/absolute -> /etc/passwd\n"), "\(symlinks.stdoutText)")
        #expect(long.stdoutText.contains(" link to "), "\(long.stdoutText)")
    }

    @Test func printsAFileFromAGPTDisk() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("gpt", in: dir)
        for path in ["/sizes/size-3m", "sizes/hello.txt", "/sparse/hole-middle"] {
            let r = try run("qb-fs", ["-O", img.path, path])
            #expect(r.status == 0, "\(r.stderr)")
            let original = try Data(contentsOf: Self.tree.appendingPathComponent(path))
            #expect(r.stdout == original, "\(path)")
        }
        let info = try run("qb-fs", ["--info", img.path])
        #expect(info.status == 0)
        #expect(info.stdoutText.contains("partition table: GPT, 3 partitions"), "\(info.stdoutText)")
        #expect(info.stdoutText.contains("filesystem: partition 3 at offset 3145728"), "\(info.stdoutText)")
        #expect(info.stdoutText.contains("type: ext4"))
        let wrong = try run("qb-fs", ["-t", "--partition", "1", img.path])
        #expect(wrong.status == 3)
        #expect(wrong.stderr.contains("no ext2/3/4 filesystem"), "\(wrong.stderr)")
        let missing = try run("qb-fs", ["-t", "--partition", "9", img.path])
        #expect(missing.status == 2)
        #expect(missing.stderr == "qb-fs: \(img.path): there is no partition 9 (partitions: 1, 2, 3)\n", "\(missing.stderr)")
    }

    /// `--tar` output read by GNU tar and by qb-untar gives the source tree
    /// (holes through PAX sparse 1.0, hard links as links).
    @Test(arguments: ["ext4", "ext2", "ext4-inline"])
    func tarStreamIsReadByGNUTarAndQbUntar(kind: String) throws {
        let dir = try ScratchDirectory()
        let img = try Self.image(kind, in: dir)
        let skip = kind == "ext4-inline" ? ["--skip", "sparse/hole-end", "--skip", "sparse/dd-seek"] : []
        let gnu = try shell("mkdir gnu && qb-fs --tar \(img.path) | tar -xf - -C gnu 2>/dev/null", directory: dir.url)
        #expect(gnu.status == 0, "\(gnu.stderr)")
        #expect(try Self.compare(dir.file("gnu"), skip).status == 0)
        let ours = try shell("mkdir qb && qb-fs --tar \(img.path) /sparse /links | qb-untar -x -C qb", directory: dir.url)
        #expect(ours.status == 0, "\(ours.stderr)")
        for path in ["sparse/huge-hole", "sparse/hole-middle", "links/b/third"] {
            let a = try Data(contentsOf: Self.tree.appendingPathComponent(path))
            let b = try Data(contentsOf: dir.file("qb/" + path))
            #expect(a == b, "\(path)")
        }
        let listed = try shell("qb-fs --tar \(img.path) /links | tar -tvf -", directory: dir.url)
        #expect(listed.stdoutText.contains("links/b/third link to links/a/original"), "\(listed.stdoutText)")
    }

    @Test func unwrittenExtentsReadAsZeros() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("unwritten", in: dir)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 0, "\(r.stderr)")
        let data = try Data(contentsOf: dir.file("out/unwritten"))
        #expect(data.count == 200_000)
        #expect(data.allSatisfy { $0 == 0 })
        #expect(try Self.compare(dir.file("out"), ["--extra", "unwritten"]).status == 0)
    }

    @Test func aJournalThatNeedsRecoveryIsReplayedInMemory() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("dirty-journal", in: dir)
        let before = try sha256(of: img)
        let replayed = try run("qb-fs", ["-O", img.path, "/sizes/hello.txt"])
        #expect(replayed.status == 0, "\(replayed.stderr)")
        #expect(replayed.stdoutText == "JOURNALED!\n")
        let onDisk = try run("qb-fs", ["-O", "--no-journal", img.path, "/sizes/hello.txt"])
        #expect(onDisk.status == 0)
        #expect(onDisk.stdoutText == "hello, ext\n")
        #expect(onDisk.stderr.contains("the journal needs recovery and was not replayed (--no-journal)"), "\(onDisk.stderr)")
        let info = try run("qb-fs", ["--info", img.path])
        #expect(info.stdoutText.contains("journal: inode 8, replayed in memory: 1 transaction"), "\(info.stdoutText)")
        // Never written.
        #expect(try sha256(of: img) == before)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 0)
        #expect(try Self.compare(dir.file("out"), ["--skip", "sizes/hello.txt"]).status == 0)
    }

    /// Damaged images: status 3, one line per damaged file, the rest intact.
    @Test(arguments: [
        ("cycle", ["qb-fs: a/b/loop (inode 12): directory already met elsewhere (a directory cycle or a hard-linked directory); not entered"], [String]()),
        ("corrupt-inode", ["qb-fs: sizes/size-4096 (inode 3082): inode 3082's extent points at block 2147483632, outside the filesystem's 24576 blocks",
                           "qb-fs: sizes/size-4097 (inode 3083): inode 3083 checksum does not match"], ["sizes/size-4096", "sizes/size-4097"]),
        ("huge-size", ["qb-fs: sizes/size-61 (inode 3086): inode 3086 claims 1152921504606846976 bytes, more than a file can hold (17592186044416)"],
         ["sizes/size-61"]),
    ])
    func damagedImagesAreSalvaged(kind: String, lines: [String], lost: [String]) throws {
        let dir = try ScratchDirectory()
        let img = try Self.image(kind, in: dir)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        let noun = lines.count == 1 ? "problem" : "problems"
        #expect(r.stderr == (lines + ["qb-fs: \(img.path): \(lines.count) \(noun) found; everything else was read"]).joined(separator: "\n") + "\n",
                "\(r.stderr)")
        let compared = try Self.compare(dir.file("out"), lost.flatMap { ["--ignore", $0] })
        #expect(compared.status == 0, "\(compared.stdoutText)")
        #expect(!dir.listing().contains { $0.contains(".qb-tmp") })
        // Listing reports the same damage and the same status.
        let listed = try run("qb-fs", ["-t", img.path])
        #expect(listed.status == 3)
    }

    /// Damage debugfs and dd can make in an otherwise good ext4 image: the
    /// damaged part is reported (status 3), everything else still extracts.
    @Test(arguments: [
        // An unused superblock field (s_last_mounted) changed: checksum off.
        ("dd:1160:X", "qb-fs: IMG: superblock checksum does not match", [String]()),
        // An unused group descriptor field (bg_exclude_bitmap_lo) changed.
        ("dd:4116:X", "qb-fs: IMG: group descriptor 0 checksum does not match; its inodes were read all the same", []),
        // fscrypt's flag on a file: listed, reported, not extracted.
        ("debugfs:sif /sizes/hello.txt flags 0x80800", "qb-fs: sizes/hello.txt (inode 3076): encrypted (fscrypt): contents not extracted",
         ["sizes/hello.txt"]),
        // fscrypt's flag on symbolic links, slow and fast: their targets are ciphertext.
        ("debugfs:sif /symlinks/long-300 flags 0x80800",
         "qb-fs: symlinks/long-300 (inode 3099): encrypted (fscrypt) symbolic link: its target is not read", ["symlinks/long-300"]),
        ("debugfs:sif /symlinks/short flags 0x800",
         "qb-fs: symlinks/short (inode 3100): encrypted (fscrypt) symbolic link: its target is not read", ["symlinks/short"]),
        // debugfs's mknod stores the name as given, slash included.
        ("debugfs:mknod /evil p", "qb-fs: /evil (inode 3106): invalid file name in directory", []),
    ])
    func damagedMetadataIsReported(change: String, line: String, lost: [String]) throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("ext4", in: dir)
        if change.hasPrefix("dd:") {
            let parts = change.split(separator: ":")
            let r = try shell("printf '\(parts[2])' | dd of=\(img.path) bs=1 seek=\(parts[1]) conv=notrunc 2>/dev/null")
            #expect(r.status == 0)
        } else {
            let r = try run("debugfs", ["-w", "-R", String(change.dropFirst("debugfs:".count)), img.path])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        let expected = line.replacingOccurrences(of: "IMG", with: img.path)
        #expect(r.stderr == expected + "\nqb-fs: \(img.path): 1 problem found; everything else was read\n", "\(r.stderr)")
        #expect(try Self.compare(dir.file("out"), lost.flatMap { ["--ignore", $0] }).status == 0)
    }

    @Test func unknownIncompatibleFeaturesAreRefusedByName() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("ext4", in: dir)
        let features = try run("debugfs", ["-R", "ssv feature_incompat 0x802c2", "-w", img.path])
        #expect(features.status == 0)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        #expect(r.stderr == "qb-fs: \(img.path): filesystem uses incompatible features this reader does not know: incompat_0x80000 (reading it without them would give wrong contents)\n",
                "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out").path))
    }

    /// Devices are listed with their numbers, and made only with the
    /// privilege to make them (a warning otherwise, as tar gives); FIFOs
    /// are made by anyone.
    @Test func devicesAndFIFOs() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("ext4", in: dir)
        let made = try shell("printf 'cd /special\\nmknod null c 1 3\\nmknod loop0 b 7 0\\n' | debugfs -w -f - \(img.path)")
        #expect(made.status == 0)
        let listed = try run("qb-fs", ["-tv", img.path, "/special"])
        #expect(listed.stdoutText.contains("c--------- 0/0             1,3 "), "\(listed.stdoutText)")
        #expect(listed.stdoutText.contains("b--------- 0/0             7,0 "), "\(listed.stdoutText)")
        #expect(listed.stdoutText.contains("prw-r--r-- 0/0               0 2018-06-14 "), "\(listed.stdoutText)")
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path, "special"])
        #expect(r.status == 0, "\(r.stderr)")
        let kinds = try run("stat", ["-c", "%n %F %t,%T", "null", "loop0", "fifo"], directory: dir.file("out/special"))
        if getuid() == 0 {
            #expect(kinds.stdoutText == "null character special file 1,3\nloop0 block special file 7,0\nfifo fifo 0,0\n", "\(kinds.stdoutText)")
        } else {
            #expect(r.stderr.contains("special/null: device not created (no privilege)"), "\(r.stderr)")
        }
    }

    @Test func refusals() throws {
        let dir = try ScratchDirectory()
        let img = try Self.image("ext4", in: dir)
        let pipe = try run("qb-fs", ["-t", "-"])
        #expect(pipe.status == 2)
        #expect(pipe.stderr.contains("the image must be a file: a filesystem needs random access"), "\(pipe.stderr)")

        let notFound = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path, "/no/such"])
        #expect(notFound.status == 2)
        #expect(notFound.stderr == "qb-fs: /no/such: not found in the filesystem\n", "\(notFound.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out/no").path))

        try Data(repeating: 0x5A, count: 1 << 20).write(to: dir.file("junk.img"))
        let junk = try run("qb-fs", ["-t", dir.file("junk.img").path])
        #expect(junk.status == 3)
        #expect(junk.stderr.contains("no ext2/3/4 filesystem (bad superblock magic)"), "\(junk.stderr)")

        // An image cut short: refused before anything is written.
        let cut = try run("/bin/sh", ["-c", "head -c 50000000 \(img.path) > \(dir.file("cut.img").path)"])
        #expect(cut.status == 0)
        let truncated = try run("qb-fs", ["-x", "-C", dir.file("cut").path, dir.file("cut.img").path])
        #expect(truncated.status == 3)
        #expect(truncated.stderr.contains("but the image holds only 50000000 bytes"), "\(truncated.stderr)")

        let dirAndO = try run("qb-fs", ["-O", img.path])
        #expect(dirAndO.status == 2)
        let twoModes = try run("qb-fs", ["-t", "-x", img.path])
        #expect(twoModes.status == 2)
    }
}

/// What the kernel reads, on the layouts and states running systems leave:
/// a crashed VM's journal, an online resize, an external journal, a file
/// this machine cannot create. Each image is made by the real mke2fs,
/// debugfs, resize2fs and tune2fs (Tests/Fixtures/ext/make-image.sh), and
/// each journal case is checked there against e2fsck -fy on a copy.
@Suite struct FilesystemFidelityTests {
    typealias T = FilesystemToolTests

    /// qb-fs -x of `img`, which must exit 0 with nothing on stderr, and its
    /// output compared with the source tree.
    func extractCleanly(_ img: URL, into out: URL, compare options: [String]) throws {
        let r = try run("qb-fs", ["-x", "-C", out.path, img.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
        let compared = try T.compare(out, options)
        #expect(compared.status == 0, "\(compared.stdoutText)")
    }

    /// A copy of `img` recovered by e2fsck -fy, as a mount or fsck at boot would leave it.
    func recovered(_ img: URL, in dir: ScratchDirectory) throws -> URL {
        let copy = dir.file("recovered.img")
        let copied = try run("cp", ["--sparse=always", img.path, copy.path])
        #expect(copied.status == 0)
        let fsck = try run("e2fsck", ["-fy", copy.path])
        #expect(fsck.status <= 1, "\(fsck.stdoutText)")
        return copy
    }

    /// A committed transaction that replaces inode 14 (in the inode-table
    /// block the journal inode's lookup reads first) and the root
    /// directory: the replay must reach blocks read before it started.
    @Test func aTransactionInTheFirstInodeTableBlockIsReplayed() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("journal-root", in: dir)
        let before = try sha256(of: img)
        let options = ["--ignore", "a/b/leaf", "--extra", "new-in-root"]
        try extractCleanly(img, into: dir.file("replayed"), compare: options)
        #expect(try String(contentsOf: dir.file("replayed/new-in-root"), encoding: .utf8) == "written in the last transaction\n")
        try extractCleanly(try recovered(img, in: dir), into: dir.file("fsck"), compare: options)
        let same = try run("python3", [T.scripts.appendingPathComponent("compare-tree.py").path, "--no-special", "--skip-root",
                                       dir.file("replayed").path, dir.file("fsck").path])
        #expect(same.status == 0, "\(same.stdoutText)")
        // As it is on disk: the old tree, and a warning that it is old.
        let onDisk = try run("qb-fs", ["-x", "--no-journal", "-C", dir.file("disk").path, img.path])
        #expect(onDisk.status == 0)
        #expect(onDisk.stderr.contains("the journal needs recovery and was not replayed (--no-journal)"), "\(onDisk.stderr)")
        #expect(try T.compare(dir.file("disk")).status == 0)
        #expect(try sha256(of: img) == before)
    }

    /// An online resize in the journal: the superblock and descriptors are
    /// read again after the replay, and targets past the old block count
    /// (inside the image) are replayed.
    @Test func aJournaledResizeIsReplayed() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("journal-resize", in: dir)
        try extractCleanly(img, into: dir.file("replayed"), compare: ["--extra", "grown"])
        #expect(try String(contentsOf: dir.file("replayed/grown"), encoding: .utf8) == "after the grow\n")
        let info = try run("qb-fs", ["--info", img.path])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.stdoutText.contains("  blocks: 98304 (100663296 bytes)\n"), "\(info.stdoutText)")
        #expect(info.stdoutText.contains("  block groups: 12\n"), "\(info.stdoutText)")
        try extractCleanly(try recovered(img, in: dir), into: dir.file("fsck"), compare: ["--extra", "grown"])
    }

    /// A journal on another device cannot be replayed: said once, status 3,
    /// everything else read.
    @Test func anExternalJournalThatNeedsRecoveryIsReported() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("external-journal", in: dir)
        let line = "qb-fs: \(img.path): the journal is on another device (UUID 5ca1ab1e-0000-4000-8000-00000000beef, device number 0x811) and needs recovery; it was not replayed, so the last changes before the filesystem stopped may be missing"
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        #expect(r.stderr == line + "\nqb-fs: \(img.path): 1 problem found; everything else was read\n", "\(r.stderr)")
        #expect(try T.compare(dir.file("out")).status == 0)
        let info = try run("qb-fs", ["--info", img.path])
        #expect(info.status == 3)
        #expect(info.stdoutText.contains("  journal: external, on another device (UUID 5ca1ab1e-0000-4000-8000-00000000beef, device number 0x811); needs recovery, not replayed\n"),
                "\(info.stdoutText)")
    }

    /// A symbolic link shorter than 60 bytes keeps its target in the inode
    /// whatever i_blocks says: the kernel charges an extended-attribute
    /// inode (ea_inode) to it, so i_blocks cannot tell fast from slow
    /// (e2fsprogs' ext2fs_is_fast_symlink decides by the size alone).
    @Test func aFastSymlinkIsFastWhateverItsBlockCount() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("ext4", in: dir)
        let charged = try run("debugfs", ["-w", "-R", "sif /symlinks/short blocks 16", img.path])
        #expect(charged.status == 0)
        try extractCleanly(img, into: dir.file("out"), compare: [])
    }

    /// A symbolic link this machine cannot create (a target past PATH_MAX)
    /// is reported and skipped, status 3; it is listed and archived all the same.
    @Test func aFileThisMachineCannotCreateIsSkipped() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("long-symlink", in: dir)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(r.stderr)")
        #expect(lines.first?.hasPrefix("qb-fs: long-link (inode ") == true && lines.first?.hasSuffix("): cannot create symbolic link: File name too long") == true,
                "\(r.stderr)")
        #expect(lines.last == "qb-fs: \(img.path): 1 problem found; everything else was read")
        #expect(try T.compare(dir.file("out")).status == 0)
        #expect(!FileManager.default.fileExists(atPath: dir.file("out/long-link").path))
        let target = String(repeating: "long/", count: 1000)
        let listed = try run("qb-fs", ["-tv", img.path, "/long-link"])
        #expect(listed.status == 0)
        #expect(listed.stdoutText.hasSuffix(" long-link -> \(target)\n"), "\(listed.stdoutText.suffix(80))")
        let archived = try shell("qb-fs --tar \(img.path) /long-link | tar -tvf -")
        #expect(archived.status == 0, "\(archived.stderr)")
        #expect(archived.stdoutText.contains("long-link -> \(target)"))
    }

    /// Files that map blocks another file maps: reported and skipped, so
    /// the output is bounded by the filesystem's size.
    @Test func blocksMappedTwiceAreReportedAndSkipped() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("shared-blocks", in: dir)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(r.stderr)")
        for (line, name) in zip(lines, ["dup1", "dup2", "dup3", "dupdir"]) {
            #expect(line.hasPrefix("qb-fs: \(name) (inode ") && line.contains(" which an earlier file or directory (or this one) maps already"), "\(line)")
        }
        #expect(lines.last == "qb-fs: \(img.path): 4 problems found; everything else was read")
        #expect(try T.compare(dir.file("out"), ["--extra", "dupdir"]).status == 0)
        for name in ["dup1", "dup2", "dup3"] { #expect(!FileManager.default.fileExists(atPath: dir.file("out/\(name)").path)) }
    }

    /// A file named three times with a link count of 1 is one file with
    /// three names, as e2fsck -fy makes it, never three copies.
    @Test func anInodeMetAgainIsAHardLink() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("links-count-1", in: dir)
        let options = ["--extra", "hello-again", "--extra", "links/hello-third"]
        try extractCleanly(img, into: dir.file("out"), compare: options)
        let inodes = try run("stat", ["-c", "%i %h", "sizes/hello.txt", "hello-again", "links/hello-third"], directory: dir.file("out"))
        let fields = inodes.stdoutText.split(separator: "\n").map { $0.split(separator: " ") }
        #expect(fields.count == 3 && Set(fields.map { $0[0] }).count == 1 && fields.allSatisfy { $0[1] == "3" }, "\(inodes.stdoutText)")
        try extractCleanly(try recovered(img, in: dir), into: dir.file("fsck"), compare: options)
    }

    /// Block maps that name one table over and over end in one step; a
    /// distinct all-zero table is a hole, skipped in one scan.
    @Test func blockMapsThatRepeatThemselvesEndAtOnce() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("blockmap-bomb", in: dir)
        let r = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 2 && lines[0].hasPrefix("qb-fs: bomb (inode ") && lines[0].contains("which an earlier file or directory (or this one) maps already"),
                "\(r.stderr)")
        #expect(try T.compare(dir.file("out"), ["--extra", "sparse-tind"]).status == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.file("out/sparse-tind").path)
        #expect(attributes[.size] as? Int == 1 << 34)
        let used = try run("du", ["-k", dir.file("out/sparse-tind").path])
        #expect(Int(used.stdoutText.split(separator: "\t").first ?? "") == 0, "\(used.stdoutText)")
    }

    /// With a small --max-memory the deepest directories of a 64 KiB-block
    /// tree do not fit: each is reported once, naming the budget, and
    /// everything else is extracted.
    @Test func theWalkHoldsOneBudget() throws {
        let dir = try ScratchDirectory()
        let img = try T.image("ext4-64k", in: dir)
        let r = try run("qb-fs", ["-x", "--max-memory", "1048576", "-C", dir.file("out").path, img.path])
        #expect(r.status == 3)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count >= 2, "\(r.stderr)")
        #expect(lines.dropLast().allSatisfy { $0.hasSuffix("the walk's memory budget of 1 MiB is used up: this directory is not entered (qb-fs --max-memory raises it)") },
                "\(r.stderr)")
        let skipped = lines.dropLast().compactMap { $0.split(separator: " ").dropFirst().first.map(String.init) }
        #expect(!skipped.isEmpty && skipped.allSatisfy { $0.hasPrefix("deep/level-01/") }, "\(skipped)")
        // A directory not entered is made, and left empty; the rest is whole.
        for path in skipped {
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("out/\(path)").path).isEmpty)
        }
        let compared = try T.compare(dir.file("out"), skipped.flatMap { ["--skip", $0] })
        #expect(compared.status == 0, "\(compared.stdoutText)")
        let all = try run("qb-fs", ["-x", "-C", dir.file("all").path, img.path])
        #expect(all.status == 0)
        let small = try run("qb-fs", ["-t", "--max-memory", "1000", img.path])
        #expect(small.status == 2)
        #expect(small.stderr.contains("--max-memory must be at least 1048576 (1 MiB)"), "\(small.stderr)")
    }
}

/// A volume that holds something else than ext2/3/4 is named, with the
/// program that reads it, by --info and by every other mode; made by the
/// real mkntfs, cryptsetup, mkfs.btrfs, mkfs.xfs, mkfs.vfat and mkswap.
@Suite struct ForeignVolumeTests {
    static let makers: [(name: String, megabytes: Int, command: String, says: String)] = [
        ("ntfs", 64, "mkntfs -F -q -Q IMG", "holds NTFS, not an ext2/3/4 filesystem: read it with ntfs-3g (ntfsls, ntfscp) or 7z"),
        ("luks", 64, "printf secret | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 IMG -d -",
         "holds LUKS (encrypted volume), not an ext2/3/4 filesystem: open it with `cryptsetup open`, then run qb-fs on /dev/mapper/NAME"),
        ("btrfs", 320, "mkfs.btrfs -q -f IMG",
         "holds btrfs, not an ext2/3/4 filesystem: copy its files out with `btrfs restore` (btrfs-progs), which needs no mount"),
        ("xfs", 320, "mkfs.xfs -q -f IMG",
         "holds XFS, not an ext2/3/4 filesystem: mount it read-only (mount -o ro,norecovery) or copy files out with xfs_db"),
        ("vfat", 64, "mkfs.vfat IMG", "holds FAT16, not an ext2/3/4 filesystem: read it with mtools (mdir, mcopy) or 7z"),
        ("swap", 64, "mkswap IMG", "holds Linux swap, not an ext2/3/4 filesystem: a swap area holds no files"),
    ]

    static func make(_ kind: String, in dir: ScratchDirectory) throws -> URL {
        let maker = makers.first { $0.name == kind }!
        let img = dir.file("\(kind).img")
        let made = try shell("truncate -s \(maker.megabytes)M \(img.path) && " + maker.command.replacingOccurrences(of: "IMG", with: img.path) + " >/dev/null 2>&1")
        #expect(made.status == 0, "\(kind): \(made.stderr)")
        return img
    }

    @Test(arguments: makers.map(\.name))
    func aWholeImageIsNamed(kind: String) throws {
        let dir = try ScratchDirectory()
        let img = try Self.make(kind, in: dir)
        let says = Self.makers.first { $0.name == kind }!.says
        let listed = try run("qb-fs", ["-t", img.path])
        #expect(listed.status == 3)
        #expect(listed.stderr == "qb-fs: \(img.path): \(says)\n", "\(listed.stderr)")
        let info = try run("qb-fs", ["--info", img.path])
        #expect(info.status == 3)
        #expect(info.stdoutText.hasPrefix("image: \(img.path) ("), "\(info.stdoutText)")
        #expect(info.stderr == "qb-fs: \(img.path): \(says)\n", "\(info.stderr)")
        let extracted = try run("qb-fs", ["-x", "-C", dir.file("out").path, img.path])
        #expect(extracted.status == 3)
        #expect(!FileManager.default.fileExists(atPath: dir.file("out").path))
    }

    /// A GPT disk with NTFS in partition 1 and LUKS in partition 2: each
    /// named in --info, and the choice of either refused by name.
    @Test func partitionsAreNamed() throws {
        let dir = try ScratchDirectory()
        let ntfs = try Self.make("ntfs", in: dir), luks = try Self.make("luks", in: dir)
        let disk = dir.file("disk.img")
        let made = try shell("""
            truncate -s 200M \(disk.path)
            printf 'label: gpt\\nstart=2048, size=131072, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\\nstart=133120, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\n' | sfdisk -q --no-reread --no-tell-kernel \(disk.path) >/dev/null
            dd if=\(ntfs.path) of=\(disk.path) bs=1M seek=1 conv=notrunc status=none
            dd if=\(luks.path) of=\(disk.path) bs=1M seek=65 conv=notrunc status=none
            """)
        #expect(made.status == 0, "\(made.stderr)")
        let info = try run("qb-fs", ["--info", disk.path])
        #expect(info.status == 3)
        #expect(info.stdoutText.contains("  1: offset 1048576, 67108864 bytes, type Microsoft basic data, NTFS (not ext2/3/4: read it with ntfs-3g (ntfsls, ntfscp) or 7z)\n"),
                "\(info.stdoutText)")
        #expect(info.stdoutText.contains("  2: offset 68157440, 67108864 bytes, type Linux filesystem, LUKS (encrypted volume) (not ext2/3/4: open it with `cryptsetup open`, then run qb-fs on /dev/mapper/NAME)\n"),
                "\(info.stdoutText)")
        #expect(info.stderr == "qb-fs: \(disk.path): no ext2/3/4 filesystem in any of the 2 partitions; partition 1 holds NTFS: read it with ntfs-3g (ntfsls, ntfscp) or 7z; partition 2 holds LUKS (encrypted volume): open it with `cryptsetup open`, then run qb-fs on /dev/mapper/NAME\n",
                "\(info.stderr)")
        let chosen = try run("qb-fs", ["-t", "--partition", "2", disk.path])
        #expect(chosen.status == 3)
        #expect(chosen.stderr == "qb-fs: \(disk.path): partition 2 holds LUKS (encrypted volume), not an ext2/3/4 filesystem: open it with `cryptsetup open`, then run qb-fs on /dev/mapper/NAME\n",
                "\(chosen.stderr)")
    }
}
