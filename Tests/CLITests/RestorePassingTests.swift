import Foundation
import Testing
import QBTestSupport

/// qb-restore --list-files and --files --path: a VM's files straight from the
/// backup, the image never written, against the route through the image
/// (qb-restore, then qb-fs -t or -x) on every ext4-bearing fixture and on
/// backups made at test time (Tests/Fixtures/fs/make-backups.sh --volume)
/// of images from Tests/Fixtures/ext/make-image.sh: a journal that needs
/// recovery, a GPT disk, a directory whose block comes before its inode in
/// the image (a second pass), damage.
@Suite struct RestorePassingTests {
    /// (fixture, VM, volume) of the genuine fixtures.
    static let fixtures: [(file: String, vm: String, volume: String)] = [
        ("v4-fs-gzip.qubes", "work", "private"), ("v4-fs-gzip.qubes", "tpl", "root"), ("v4-fs-gzip.qubes", "tpl", "private"),
        ("v3-fs-gzip.qubes", "work", "private"), ("v4-fs-damaged.qubes", "work", "private"),
    ]

    /// A backup of "work" whose private.img is image `kind`, in 1 MiB chunks.
    static func backup(_ kind: String, in dir: ScratchDirectory) throws -> URL {
        let img = try FilesystemToolTests.image(kind, in: dir)
        let out = dir.file("\(kind).qubes")
        let made = try run("/bin/bash", [Repo.fixtures.appendingPathComponent("fs/make-backups.sh").path, "--volume", img.path,
                                          String(1 << 20), out.path])
        #expect(made.status == 0, "make-backups.sh --volume \(kind): \(made.stderr)")
        try FileManager.default.removeItem(at: img)
        return out
    }

    /// The image route: the VM restored, then qb-fs `mode` on its volume.
    static func throughTheImage(_ backup: URL, vm: String, volume: String, qbfs: [String], in dir: ScratchDirectory) throws -> RunResult {
        let target = dir.file("image-route")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        let restored = try run("qb-restore", ["--passphrase", "pass:qubes", "-C", target.path, backup.path, vm])
        #expect(restored.status == 0, "\(restored.stderr)")
        return try run("qb-fs", qbfs.map { $0 == "IMG" ? target.appendingPathComponent("\(vm)/\(volume).img").path : $0 })
    }

    /// What qb-restore says of a damaged file, as qb-fs says it.
    static func damageLines(_ stderr: String, image: String) -> [String] {
        stderr.split(separator: "\n").map(String.init).filter { !$0.contains("warning: pass:TEXT") }.map {
            $0.replacingOccurrences(of: "qb-restore: vm3/private.img: ", with: "qb-fs: ")
                .replacingOccurrences(of: "qb-restore: vm2/private.img: ", with: "qb-fs: ")
                .replacingOccurrences(of: "qb-restore: vm2/root.img: ", with: "qb-fs: ")
                .replacingOccurrences(of: image, with: "IMG")
        }
    }

    func expectSameListing(_ backup: URL, vm: String, volume: String, in dir: ScratchDirectory, passes: Int? = nil) throws {
        let direct = try run("qb-restore", ["--list-files", "-v", "--volume", volume, "--passphrase", "pass:qubes", backup.path, vm])
        let imageRoute = try Self.throughTheImage(backup, vm: vm, volume: volume, qbfs: ["-tv", "IMG"], in: dir)
        #expect(direct.status == imageRoute.status, "\(direct.stderr)")
        #expect(direct.stdoutText == imageRoute.stdoutText, "\(backup.lastPathComponent) \(vm) \(volume)")
        let told = direct.stderr.split(separator: "\n").filter { $0.contains("pass over the backup") || $0.contains("passes over the backup") }
        #expect(told.count == 1, "\(direct.stderr)")
        if let passes {
            #expect(told.first?.contains("read in \(passes) pass") == true, "\(direct.stderr)")
        }
        // Nothing written: no image, no temporary or spill file left.
        #expect(dir.listing().allSatisfy { !$0.hasSuffix(".img") || $0.hasPrefix("image-route") }, "\(dir.listing())")
    }

    func expectSameFiles(_ backup: URL, vm: String, volume: String, path: String, in dir: ScratchDirectory) throws {
        let target = dir.file("direct")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        let direct = try run("qb-restore", ["--files", "-v", "--path", path, "--volume", volume, "--passphrase", "pass:qubes",
                                            "-C", target.path, backup.path, vm])
        let imageRoute = try Self.throughTheImage(backup, vm: vm, volume: volume,
                                                  qbfs: ["-x", "-C", dir.file("qbfs").path, "IMG", path], in: dir)
        #expect(direct.status == imageRoute.status, "\(direct.stderr)")
        let compared = try run("python3", [FilesystemToolTests.scripts.appendingPathComponent("compare-tree.py").path, "--no-special",
                                           "--skip-root", dir.file("qbfs").path, target.appendingPathComponent("\(vm)/files").path])
        #expect(compared.status == 0, "\(backup.lastPathComponent) \(vm) \(path): \(compared.stdoutText)")
        let left = try run("find", [target.path, "-name", "*.img", "-o", "-name", ".qb-*"])
        #expect(left.stdoutText.isEmpty, "\(left.stdoutText)")
        try expectKeysDerivedOnce(backup, volume: volume, stderr: direct.stderr)
    }

    /// scrypt runs once per chunk in all, however many passes were made: a
    /// v4 volume's chunks are opened again with the keys of the first pass
    /// (-v tells both counts); v3 derives no keys.
    func expectKeysDerivedOnce(_ backup: URL, volume: String, stderr: String) throws {
        let lines = stderr.split(separator: "\n").map(String.init)
        let told = lines.first { $0.contains(" pass over the backup") || $0.contains(" passes over the backup") } ?? ""
        let passes = Int(told.components(separatedBy: " read in ").last?.split(separator: " ").first ?? "") ?? 0
        let keys = lines.first { $0.hasPrefix("qb-restore: ") && $0.contains(" scrypt key derivation") }
        let members = try run("tar", ["-itf", backup.path]).stdoutText.split(separator: "\n")
        // The volume read: "vm3/private.img: read in 2 passes ..."
        let file = told.components(separatedBy: ": ").first ?? ""
        #expect(file.hasSuffix("/\(volume).img"), "\(stderr)")
        let chunks = members.filter { $0.hasPrefix(file + ".") && $0.hasSuffix(".enc") }.count
        guard chunks > 0 else {
            #expect(keys == nil, "\(stderr)")
            return
        }
        #expect(passes >= 2, "\(stderr)")
        let numbers = (keys ?? "").split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        // "N scrypt key derivations, once per chunk; M chunks opened again with the key kept"
        #expect(numbers.count == 2, "\(stderr)")
        if numbers.count == 2 {
            #expect(numbers[0] <= members.filter { $0.hasSuffix(".enc") }.count, "\(stderr)")
            #expect(numbers[1] == chunks * (passes - 1), "\(stderr)")
        }
    }

    @Test(arguments: fixtures.map { "\($0.file) \($0.vm) \($0.volume)" })
    func theFixturesListAndExtractAsThroughTheImage(_ what: String) throws {
        let parts = what.split(separator: " ").map(String.init)
        let dir = try ScratchDirectory()
        let backup = Repo.fixture(parts[0])
        try expectSameListing(backup, vm: parts[1], volume: parts[2], in: dir)
        try expectSameFiles(backup, vm: parts[1], volume: parts[2], path: "/", in: try ScratchDirectory())
    }

    /// A journal that needs recovery (a crashed VM), a GPT disk, a
    /// directory's block before its inode: the same listing and files, in
    /// the passes each needs.
    @Test(arguments: [("journal-root", 1), ("dirty-journal", 1), ("gpt", 1), ("dir-before-inode", 2), ("ext3", 2)])
    func generatedImagesListAndExtractAsThroughTheImage(kind: String, passes: Int) throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup(kind, in: dir)
        try expectSameListing(backup, vm: "work", volume: "private", in: dir, passes: passes)
        try expectSameFiles(backup, vm: "work", volume: "private", path: "/", in: try ScratchDirectory())
        try expectSameFiles(backup, vm: "work", volume: "private", path: "/sizes", in: try ScratchDirectory())
    }

    /// From a pipe there is one pass: enough for most images; for one that
    /// needs another, said so, nothing written.
    @Test func aPipeGivesOnePass() throws {
        let dir = try ScratchDirectory()
        let once = try Self.backup("ext4", in: dir)
        let listed = try shell("cat \(once.path) | qb-restore --list-files --passphrase pass:qubes - work")
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdoutText.contains("sizes/hello.txt\n"))
        let twice = try Self.backup("dir-before-inode", in: dir)
        let refused = try shell("cat \(twice.path) | qb-restore --list-files --passphrase pass:qubes - work")
        #expect(refused.status == 3)
        #expect(refused.stdoutText.isEmpty)
        #expect(refused.stderr.contains("qb-restore: vm3/private.img: reading these files needs another pass over the backup (some of the filesystem's metadata comes before what points at it), and a pipe can be read only once (give the backup as a file, or restore the image with --files)"),
                "\(refused.stderr)")
        // Standard input that is a file can be read again.
        let redirected = try shell("qb-restore --list-files --passphrase pass:qubes - work < \(twice.path)")
        #expect(redirected.status == 0, "\(redirected.stderr)")
        // Extraction always takes a pass of its own.
        let target = dir.file("t")
        let extract = try shell("mkdir \(target.path) && cat \(once.path) | qb-restore --files --path /sizes -C \(target.path) --passphrase pass:qubes - work")
        #expect(extract.status == 2)
        #expect(extract.stderr == "qb-restore: standard input: --files --path reads the backup twice or more (the files' data is written in a pass of its own), and a pipe can be read only once (give the backup as a file, or restore the image with --files)\n",
                "\(extract.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: target.path).isEmpty)
        let left = try run("find", [target.path, "-name", ".qb-*"])
        #expect(left.stdoutText.isEmpty, "\(left.stdoutText)")
    }

    /// Damage is reported as qb-fs reports it, and the rest is read.
    @Test func damageIsReportedAsByQbFs() throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup("corrupt-inode", in: dir)
        let direct = try run("qb-restore", ["--list-files", "--passphrase", "pass:qubes", backup.path, "work"])
        let imageRoute = try Self.throughTheImage(backup, vm: "work", volume: "private", qbfs: ["-t", "IMG"], in: dir)
        #expect(direct.status == 3 && imageRoute.status == 3)
        #expect(direct.stdoutText == imageRoute.stdoutText)
        let image = dir.file("image-route/work/private.img").path
        #expect(Self.damageLines(direct.stderr, image: "vm3/private.img").filter { !$0.contains("problems found") }
                == Self.damageLines(imageRoute.stderr, image: image).filter { !$0.contains("problems found") },
                "\(direct.stderr) vs \(imageRoute.stderr)")
    }

    @Test func optionsAreChecked() throws {
        let backup = Repo.fixture("v4-fs-gzip.qubes").path
        for (args, words) in [
            (["--list-files", backup], "--list-files takes the name of one VM"),
            (["--list-files", backup, "work", "tpl"], "--list-files takes the name of one VM"),
            (["--list-files", "--files", backup, "work"], "--list-files lists one VM's files: not with --files"),
            (["--path", "/home", backup, "work"], "--path goes with --files or --list-files"),
            (["--files", "--files-only", "--path", "/home", backup, "work"], "--files --path writes no image: not with --files-only"),
            (["--volume", "swap", "--list-files", backup, "work"], "--volume is private or root"),
            (["--volume", "root", backup, "work"], "--volume goes with --list-files or --files --path"),
        ] {
            let r = try run("qb-restore", ["--passphrase", "pass:qubes"] + args)
            #expect(r.status == 2, "\(args)")
            #expect(r.stderr.contains(words), "\(args): \(r.stderr)")
        }
    }

    /// A path the volume does not hold is a usage error, as in qb-fs, named
    /// with the volume; nothing is left that would stop the corrected command.
    @Test func aPathNotThereIsAUsageError() throws {
        let backup = Repo.fixture("v4-fs-gzip.qubes").path
        let dir = try ScratchDirectory()
        let listed = try run("qb-restore", ["--list-files", "--path", "/home/nobody", "--passphrase", "pass:qubes", backup, "work"],
                             directory: dir.url)
        #expect(listed.status == 2)
        #expect(listed.stdoutText.isEmpty)
        #expect(listed.stderr.hasSuffix("qb-restore: vm3/private.img: /home/nobody: not found in the filesystem\n"), "\(listed.stderr)")
        let extracted = try run("qb-restore", ["--files", "--path", "/home/nobody", "-C", "out", "--passphrase", "pass:qubes", backup, "work"],
                                directory: dir.url)
        #expect(extracted.status == 2)
        #expect(extracted.stderr.hasSuffix("qb-restore: vm3/private.img: /home/nobody: not found in the filesystem\n"), "\(extracted.stderr)")
        #expect(dir.listing() == ["out"], "\(dir.listing())")
        let again = try run("qb-restore", ["--files", "--path", "/home/user/Documents", "-C", "out", "--passphrase", "pass:qubes", backup, "work"],
                            directory: dir.url)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.file("out/work/files/home/user/Documents/notes.txt").path))
    }
}
