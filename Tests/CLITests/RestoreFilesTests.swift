import Foundation
import Testing
import QBTestSupport

/// qb-restore --files on backups whose volumes are real ext4 filesystems
/// (Tests/Fixtures/fs/make-backups.sh): each VM's private.img is read in
/// user space and its files land in DIR/VM/files/ exactly as the image's
/// source tree was, from a file and from a pipe; the small-tool route
/// (qb-restore, then qb-fs -x) gives the same tree; a damaged image inside
/// an authentic backup is salvaged with status 3.
@Suite struct RestoreFilesTests {
    static let backups = ["v3-fs-gzip.qubes", "v4-fs-gzip.qubes"]

    /// The VMs of a fixture whose private.img holds a described filesystem.
    static func vmsWithFiles(_ fixture: [String: Any]) -> [(vm: String, description: [String: Any])] {
        (fixture["expected"] as! [String: Any]).keys.sorted().compactMap { vm in
            Manifest.filesystem(fixture, vm: vm, volume: "private.img").map { (vm, $0) }
        }
    }

    @Test func theFixturesDescribeFilesystems() throws {
        for file in Self.backups + ["v4-fs-damaged.qubes"] {
            let vms = Self.vmsWithFiles(try Manifest.entry(file))
            #expect(!vms.isEmpty, "\(file)")
            #expect(vms.allSatisfy { ($0.description["files"] as? [String: Any])?.count ?? 0 >= 5 }, "\(file)")
        }
    }

    @Test(arguments: backups)
    func filesComeOutOfEveryImage(file: String) throws {
        let fixture = try Manifest.entry(file)
        for fromPipe in [false, true] {
            let dir = try ScratchDirectory()
            let r = try RestoreToolTests.restore(file, into: dir, extra: ["--files"], fromPipe: fromPipe)
            #expect(r.status == 0, "\(file): \(r.stderr)")
            // The images are restored as before, and stay.
            let images = try Manifest.mismatches(fixture, under: dir.file("target"), place: Manifest.restoredPlace)
            #expect(images.isEmpty, "\(file): \(images)")
            for (vm, description) in Self.vmsWithFiles(fixture) {
                let problems = try Manifest.filesystemMismatches(description, under: dir.file("target/\(vm)/files"))
                #expect(problems.isEmpty, "\(file) \(vm) (pipe: \(fromPipe)): \(problems)")
            }
            #expect(!dir.listing().contains { $0.contains(".qb-tmp") })
        }
    }

    @Test(arguments: backups)
    func smallToolsGiveTheSameTree(file: String) throws {
        let fixture = try Manifest.entry(file)
        let dir = try ScratchDirectory()
        let once = try RestoreToolTests.restore(file, into: dir, extra: ["--files", "--files-only"])
        #expect(once.status == 0, "\(once.stderr)")
        // The small-tool route: the image first, then qb-fs.
        let other = try ScratchDirectory()
        let restored = try RestoreToolTests.restore(file, into: other)
        #expect(restored.status == 0)
        for (vm, _) in Self.vmsWithFiles(fixture) {
            #expect(!FileManager.default.fileExists(atPath: dir.file("target/\(vm)/private.img").path), "--files-only removes the image")
            let fs = try run("qb-fs", ["-x", "-C", other.file("target/\(vm)/files").path, other.file("target/\(vm)/private.img").path])
            #expect(fs.status == 0, "\(fs.stderr)")
            let diff = try run("diff", ["-r", "--no-dereference", dir.file("target/\(vm)/files").path, other.file("target/\(vm)/files").path])
            #expect(diff.status == 0, "\(file) \(vm): \(diff.stdoutText)")
        }
    }

    /// A template's root.img is a GPT disk: qb-fs finds the root filesystem
    /// in partition 3 by itself.
    @Test func aTemplateRootImageIsReadFromItsPartition() throws {
        let file = "v4-fs-gzip.qubes"
        let fixture = try Manifest.entry(file)
        let description = try #require(Manifest.filesystem(fixture, vm: "tpl", volume: "root.img"))
        #expect(description["partition"] as? Int == 3)
        let dir = try ScratchDirectory()
        let restored = try RestoreToolTests.restore(file, into: dir, vms: ["tpl"])
        #expect(restored.status == 0, "\(restored.stderr)")
        let image = dir.file("target/tpl/root.img").path
        let r = try run("qb-fs", ["-x", "-C", dir.file("root").path, image])
        #expect(r.status == 0, "\(r.stderr)")
        let problems = try Manifest.filesystemMismatches(description, under: dir.file("root"))
        #expect(problems.isEmpty, "\(problems)")
        let info = try run("qb-fs", ["--info", image])
        #expect(info.stdoutText.contains("filesystem: partition 3 at offset "), "\(info.stdoutText)")
    }

    @Test func theExplainedScriptReadsTheFilesToo() throws {
        let file = "v4-fs-gzip.qubes"
        let fixture = try Manifest.entry(file)
        let dir = try ScratchDirectory()
        let explained = try run("qb-restore", ["--explain", "--files", "--passphrase", "env:P", "-C", "by-tools", Repo.fixture(file).path],
                                environment: ["P": "qubes"], directory: dir.url)
        #expect(explained.status == 0, "\(explained.stderr)")
        #expect(explained.stdoutText.contains("qb-fs -x -C \"$target\"/work/files \"$target\"/work/private.img\n"), "\(explained.stdoutText)")
        try explained.stdoutText.write(to: dir.file("restore.sh"), atomically: true, encoding: .utf8)
        let ran = try shell("mkdir by-tools && bash restore.sh > /dev/null", environment: ["P": "qubes"], directory: dir.url)
        #expect(ran.status == 0, "\(ran.stderr)")
        for (vm, description) in Self.vmsWithFiles(fixture) {
            let problems = try Manifest.filesystemMismatches(description, under: dir.file("by-tools/\(vm)/files"))
            #expect(problems.isEmpty, "\(vm): \(problems)")
        }
    }

    /// An authentic backup of a damaged filesystem: the backup restores,
    /// the damaged file is named, everything else comes out, status 3, and
    /// --files-only keeps the image.
    @Test func aDamagedImageIsSalvaged() throws {
        let file = "v4-fs-damaged.qubes"
        let fixture = try Manifest.entry(file)
        let (vm, description) = try #require(Self.vmsWithFiles(fixture).first)
        let damaged = Set(description["damaged"] as? [String] ?? [])
        #expect(damaged == ["home/user/Documents/broken.txt"])
        let dir = try ScratchDirectory()
        let r = try RestoreToolTests.restore(file, into: dir, extra: ["--files", "--files-only"])
        #expect(r.status == 3)
        let lines = r.stderr.split(separator: "\n").map(String.init).filter { !$0.contains("warning: pass:") }
        #expect(lines == [
            "qb-restore: \(vm)/private.img: home/user/Documents/broken.txt (inode 16): inode 16 checksum does not match",
            "qb-restore: target/\(vm)/private.img: 1 problem found; everything else was read",
            "qb-restore: warning: target/\(vm)/private.img: kept, since not all its files could be read",
        ], "\(r.stderr)")
        let images = try Manifest.mismatches(fixture, under: dir.file("target"), place: Manifest.restoredPlace)
        #expect(images.isEmpty, "\(images)")
        let problems = try Manifest.filesystemMismatches(description, under: dir.file("target/\(vm)/files"), skipping: damaged)
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func listShowsTheVolumes() throws {
        let r = try run("qb-restore", ["--list", "--passphrase", "env:P", Repo.fixture("v4-fs-gzip.qubes").path], environment: ["P": "qubes"])
        #expect(r.status == 0, "\(r.stderr)")
        let rows = r.stdoutText.split(separator: "\n").map(String.init)
        #expect(rows.count >= 4 && rows[1].hasSuffix("VOLUMES"), "\(r.stdoutText)")
        let tpl = try #require(rows.first { $0.hasPrefix("tpl ") })
        #expect(tpl.contains("root.img ") && tpl.contains("private.img "), "\(tpl)")
        let work = try #require(rows.first { $0.hasPrefix("work ") })
        #expect(work.hasSuffix(" private.img 16777216") || work.contains("private.img "), "\(work)")
        #expect(!work.contains("root.img"))
    }

    @Test func filesOptionsAreChecked() throws {
        let onlyAlone = try run("qb-restore", ["--files-only", "--passphrase", "pass:x", Repo.fixture("v4-fs-gzip.qubes").path])
        #expect(onlyAlone.status == 2)
        #expect(onlyAlone.stderr.contains("--files-only goes with --files"), "\(onlyAlone.stderr)")
        let withList = try run("qb-restore", ["--files", "--list", "--passphrase", "pass:x", Repo.fixture("v4-fs-gzip.qubes").path])
        #expect(withList.status == 2)
    }
}
