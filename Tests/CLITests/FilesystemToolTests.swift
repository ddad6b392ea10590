import Foundation
import Testing
import QBTestSupport

/// qb-fs on images made by the real mke2fs, debugfs and sfdisk from one
/// source tree (Tests/Fixtures/ext): every image kind extracts to exactly
/// the source (contents, sizes, holes, modes, symlink targets, hard links,
/// mtimes), and every damaged one ends with status 3, one line per damaged
/// file, and the rest extracted.
@Suite(.serialized) struct FilesystemToolTests {
    static let scripts = Repo.fixtures.appendingPathComponent("ext")

    /// The source tree, built once for the whole suite.
    static let source: ScratchDirectory = {
        let dir = try! ScratchDirectory()
        let made = try! run("/bin/bash", [scripts.appendingPathComponent("make-tree.sh").path, dir.file("src").path])
        precondition(made.status == 0, "make-tree.sh failed: \(made.stderr)")
        return dir
    }()
    static var tree: URL { source.file("src") }

    /// Every kind make-image.sh offers, which must all be tested below.
    static let kinds: [String] = {
        let listed = try! run("/bin/bash", [scripts.appendingPathComponent("make-image.sh").path, "--list"])
        return listed.stdoutText.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
    }()

    static let cleanKinds = ["ext2", "ext3", "ext4", "ext4-1k", "ext4-64k", "ext4-no64", "ext4-inline", "ext4-seed",
                             "ext4-htree", "ext4-128", "ext4-casefold", "gpt", "mbr"]
    static let specialKinds = ["unwritten", "dirty-journal", "cycle", "corrupt-inode", "huge-size"]

    static func image(_ kind: String, in dir: ScratchDirectory) throws -> URL {
        let img = dir.file("\(kind).img")
        let made = try run("/bin/bash", [scripts.appendingPathComponent("make-image.sh").path, kind, tree.path, img.path])
        #expect(made.status == 0, "make-image.sh \(kind): \(made.stderr)")
        return img
    }

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
        #expect(Self.kinds.count >= 18, "\(Self.kinds)")
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
