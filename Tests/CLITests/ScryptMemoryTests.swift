import Foundation
import Testing
import QBTestSupport

/// Key derivation that fits the machine, and every scrypt parameter set
/// Qubes writes (issue 24). Backups are made at test time with the real
/// `scrypt enc` (Tests/Fixtures/scrypt/make-v4-backup.sh): logN 20 and 21
/// cost 1–2 GiB and seconds per chunk, so each backup has one VM chunk or
/// two, and the suite runs one test at a time to bound its memory.
@Suite(.serialized) struct ScryptMemoryTests {
    static let passphrase = "scrypt memory"
    static let backupID = "20261124T101500-2424"

    /// A backup under `dir` (backup.qubes, and private.img to compare with):
    /// header and qubes.xml under the first parameter set, one VM chunk
    /// under each further one (or one chunk under the first).
    static func backup(in dir: ScratchDirectory, _ parameterSets: String...) throws -> URL {
        let script = Repo.fixture("scrypt/make-v4-backup.sh").path
        let quoted = parameterSets.map { "'\($0)'" }.joined(separator: " ")
        let made = try shell("\(script) \(dir.file("backup.qubes").path) \(quoted)", environment: ["P": passphrase])
        #expect(made.status == 0, "\(made.stderr)")
        return dir.file("backup.qubes")
    }

    /// qb-restore into DIR/target, under `prefix` (prlimit, a cgroup).
    static func restore(_ backup: URL, in dir: ScratchDirectory, prefix: String = "", options: String = "-v", into target: String = "target") throws -> RunResult {
        try shell("\(prefix) qb-restore \(options) --passphrase env:P -C \(target) \(backup.path)",
                  environment: ["P": passphrase], directory: dir.url)
    }

    static func restoredWhole(_ dir: ScratchDirectory) throws -> Bool {
        try run("cmp", [dir.file("private.img").path, dir.file("target/work/private.img").path]).status == 0
    }

    /// The chunks of the VM through qb-decrypt --chunks, compared with the image.
    static func decryptChunks(_ backup: URL, in dir: ScratchDirectory, prefix: String = "", options: String = "-v") throws -> RunResult {
        try shell("""
            qb-untar -i --tar 'vm3/private.img.*' < \(backup.path) \
              | \(prefix) qb-decrypt --chunks \(options) --backup-id \(backupID) --passphrase env:P \
              | gzip -d | tar -xO vm3/private.img | cmp - private.img
            """, environment: ["P": passphrase], directory: dir.url)
    }

    /// The one line that reports the plan.
    static func planLine(_ stderr: String, tool: String = "qb-restore") -> String {
        stderr.split(separator: "\n").first { $0.hasPrefix("\(tool): ") && $0.contains(" each") }.map(String.init) ?? ""
    }

    static var havePrlimit: Bool { haveProgram("prlimit") && !underAddressSanitizer }

    /// `prlimit --as=3G qb-restore -j 8` on Qubes' usual parameters: two
    /// jobs at most fit, and the restore is whole. Before issue 24 it
    /// failed after 9 s with "out of memory?" (status 3).
    @Test(.enabled(if: ScryptMemoryTests.havePrlimit, "needs prlimit (util-linux), and tools without ASan"))
    func logN20UnderAnAddressSpaceLimit() throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup(in: dir, "20 8 1")
        let r = try Self.restore(backup, in: dir, prefix: "prlimit --as=\(3 << 30)", options: "-v -j 8")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.restoredWhole(dir))
        let plan = Self.planLine(r.stderr)
        #expect(plan.hasPrefix("qb-restore: 2 jobs: at most 8 asked, ") || plan.hasPrefix("qb-restore: 1 job: at most 8 asked, "), "\(r.stderr)")
        #expect(plan.hasSuffix(" available (address-space limit), 1.1 GiB each"), "\(r.stderr)")
        #expect(!r.stderr.contains("passphrase"), "\(r.stderr)")
    }

    /// The same under a cgroup v2 `memory.max` of 3 GiB, where an
    /// allocation is not refused but the OOM killer ends the process: the
    /// plan alone must keep it within the limit.
    @Test(.enabled(if: CgroupV2.memoryLimitUsable, "needs a writable cgroup v2 hierarchy with the memory controller, as root"))
    func logN20UnderACgroupMemoryLimit() throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup(in: dir, "20 8 1")
        let group = try CgroupV2.child(memoryMax: 3 << 30)
        defer { CgroupV2.remove(group) }
        let r = try Self.restore(backup, in: dir, prefix: "sh -c 'echo $$ > \(group)/cgroup.procs && exec \"$0\" \"$@\"'", options: "-v -j 8")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.restoredWhole(dir))
        let plan = Self.planLine(r.stderr)
        #expect(plan.hasPrefix("qb-restore: 2 jobs: ") || plan.hasPrefix("qb-restore: 1 job: "), "\(r.stderr)")
        #expect(plan.hasSuffix(" available (cgroup memory limit), 1.1 GiB each"), "\(r.stderr)")
    }

    /// logN 21 (2 GiB), which scrypt enc picks on a fast machine, restores
    /// by default; it was refused over a fixed 2 GiB limit.
    @Test func logN21RestoresByDefault() throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup(in: dir, "21 8 1")
        let r = try Self.restore(backup, in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.restoredWhole(dir))
        #expect(Self.planLine(r.stderr).hasSuffix(", 2.1 GiB each"), "\(r.stderr)")
    }

    /// p = 2, which scrypt enc picks on a fast machine with little memory,
    /// restores by default, through qb-restore and qb-decrypt --chunks.
    @Test func pTwoRestoresByDefault() throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup(in: dir, "18 8 2")
        let r = try Self.restore(backup, in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.restoredWhole(dir))
        let decrypted = try Self.decryptChunks(backup, in: dir)
        #expect(decrypted.status == 0, "\(decrypted.stderr)")
        #expect(Self.planLine(decrypted.stderr, tool: "qb-decrypt").hasSuffix(", 356 MiB each"), "\(decrypted.stderr)")
    }

    /// The plan is made from the first envelope's parameters; scrypt enc
    /// chooses them afresh for every chunk, so later chunks can need more.
    /// Here two logN 20 chunks meet an address space with room for one
    /// derivation after a plan of two jobs made from logN 10: the second
    /// waits for the first's room (the plan's memory budget) rather than
    /// being refused its allocation. Both tools; -j 2 makes two jobs the
    /// plan even where one CPU is all there is.
    @Test(.enabled(if: ScryptMemoryTests.havePrlimit, "needs prlimit (util-linux), and tools without ASan"))
    func biggerChunksWaitForRoom() throws {
        let dir = try ScratchDirectory()
        let backup = try Self.backup(in: dir, "10 8 1", "10 8 1", "20 8 1", "20 8 1")
        let limit = "prlimit --as=1900000000"
        let r = try Self.restore(backup, in: dir, prefix: limit, options: "-v -j 2")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.restoredWhole(dir))
        #expect(Self.planLine(r.stderr).hasPrefix("qb-restore: 2 jobs: "), "\(r.stderr)")
        #expect(!r.stderr.contains("allocation was refused"), "\(r.stderr)")
        let decrypted = try Self.decryptChunks(backup, in: dir, prefix: limit, options: "-v -j 2")
        #expect(decrypted.status == 0, "\(decrypted.stderr)")
        #expect(Self.planLine(decrypted.stderr, tool: "qb-decrypt").hasPrefix("qb-decrypt: 2 jobs: "), "\(decrypted.stderr)")
        #expect(!decrypted.stderr.contains("allocation was refused"), "\(decrypted.stderr)")

        // Too little for one derivation: refused before deriving, naming
        // --max-memory and what is needed (status 3)...
        let refusedDir = try ScratchDirectory()
        try FileManager.default.copyItem(at: dir.file("private.img"), to: refusedDir.file("private.img"))
        let refused = try Self.restore(backup, in: refusedDir, prefix: "prlimit --as=\(1 << 30)")
        #expect(refused.status == 3, "\(refused.stderr)")
        #expect(refused.stderr.contains("qb-restore: vm3/private.img.001.enc: scrypt parameters logN 20, r 8, p 1 need 1.0 GiB (1073744896 bytes) of memory; "), "\(refused.stderr)")
        #expect(refused.stderr.contains(" available (address-space limit) (free memory, or try anyway with --max-memory 1073744896, e.g. with swap)\n"), "\(refused.stderr)")
        #expect(!refusedDir.listing().contains { $0.hasSuffix("private.img") && $0.hasPrefix("target/") }, "\(refusedDir.listing())")
        // ...and with the limit raised, a memory failure of one job alone:
        // status 4, never 1, never a passphrase message.
        let alone = try Self.restore(backup, in: refusedDir, prefix: "prlimit --as=\(1 << 30)", options: "--max-memory 2000000000", into: "target2")
        #expect(alone.status == 4, "\(alone.stderr)")
        #expect(alone.stderr.contains("qb-restore: vm3/private.img.001.enc: scrypt key derivation (logN 20, r 8, p 1) needs 1.0 GiB of memory and could not get it; "), "\(alone.stderr)")
        #expect(alone.stderr.hasSuffix(" available (address-space limit) (not a passphrase problem: free memory, or restore on a machine with more)\n"), "\(alone.stderr)")
        #expect(!refusedDir.listing().contains { $0.contains(".qb-tmp") || $0.hasSuffix("work/private.img") }, "\(refusedDir.listing())")
    }

    /// Cheap parameters: what was chosen is told with -v and in --explain,
    /// and the CPUs are those the process may use, not those online.
    @Test func theChoiceIsTold() throws {
        let fixture = Repo.fixture("v4-gzip.qubes").path
        let explained = try run("qb-restore", ["--explain", "--passphrase", "env:P", fixture], environment: ["P": "qubes"])
        #expect(explained.status == 0, "\(explained.stderr)")
        let line = explained.stdoutText.split(separator: "\n").first { $0.hasPrefix("# Chunks at once: ") } ?? ""
        #expect(line.contains(" available") && line.hasSuffix(", 101 MiB each."), "\(explained.stdoutText)")
        if haveProgram("taskset") {
            let pinned = try shell("taskset -c 0 qb-restore -v --verify-only --passphrase env:P \(fixture)", environment: ["P": "qubes"])
            #expect(pinned.status == 0, "\(pinned.stderr)")
            #expect(Self.planLine(pinned.stderr).hasPrefix("qb-restore: 1 job: 1 CPU"), "\(pinned.stderr)")
        }
        let hmac = try shell("""
            qb-untar -i --tar 'vm9/private.img.[0-9]*' < \(Repo.fixture("v3-aes-gzip.qubes").path) \
              | qb-hmac --check -v -j 3 --passphrase env:P > /dev/null
            """, environment: ["P": "qubes"])
        #expect(hmac.status == 0, "\(hmac.stderr)")
        #expect(Self.planLine(hmac.stderr, tool: "qb-hmac").hasPrefix("qb-hmac: 3 jobs: at most 3 asked, "), "\(hmac.stderr)")
        #expect(Self.planLine(hmac.stderr, tool: "qb-hmac").hasSuffix(", 100 MiB each"), "\(hmac.stderr)")
    }
}

/// A child of the cgroup v2 root with a memory limit, where this machine
/// allows one: a cgroup2 mount at /sys/fs/cgroup, the memory controller
/// enabled for the root's children, and root to write there.
enum CgroupV2 {
    static let root = "/sys/fs/cgroup"

    static var memoryLimitUsable: Bool {
        guard getuid() == 0,
              let controls = try? String(contentsOfFile: root + "/cgroup.subtree_control", encoding: .utf8),
              controls.split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("memory") else { return false }
        return access(root, W_OK) == 0
    }

    /// Makes the child; swap is turned off in it when the kernel offers
    /// the knob, so the limit is the memory limit.
    static func child(memoryMax: Int) throws -> String {
        let path = root + "/qb-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try "\(memoryMax)\n".write(toFile: path + "/memory.max", atomically: false, encoding: .utf8)
        if FileManager.default.fileExists(atPath: path + "/memory.swap.max") {
            try "0\n".write(toFile: path + "/memory.swap.max", atomically: false, encoding: .utf8)
        }
        return path
    }

    static func remove(_ path: String) { rmdir(path) }
}
