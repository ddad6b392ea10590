import Foundation
import Testing
import QBTestSupport

/// qb-restore on every fixture: valid ones restore like the manifest (from a
/// file and from a pipe), `--explain`'s script gives the same bytes, tampered
/// ones are refused at their layer with nothing complete-looking left.
@Suite struct RestoreToolTests {
    static let valid: [String] = Manifest.files { $0.valid }

    /// The parameterized tests below run one case per valid fixture: none
    /// when the manifest does not load, which must fail, not pass.
    @Test func hasItsCases() throws {
        _ = try Manifest.loaded.get()
        #expect(Self.valid.count >= 11, "\(Self.valid)")
    }

    static func restore(_ file: String, into dir: ScratchDirectory, extra: [String] = [], vms: [String] = [], fromPipe: Bool = false,
                        passphrase: String? = nil) throws -> RunResult {
        let fixture = try Manifest.entry(file)
        let pass = passphrase ?? fixture["passphrase"] as! String
        let args = ["--passphrase", "env:P", "-C", "target"] + extra
        if fromPipe {
            return try shell("mkdir -p target && cat \(Repo.fixture(file).path) | qb-restore \(args.joined(separator: " ")) - \(vms.joined(separator: " "))",
                             environment: ["P": pass], directory: dir.url)
        }
        try FileManager.default.createDirectory(at: dir.file("target"), withIntermediateDirectories: true)
        return try run("qb-restore", args + [Repo.fixture(file).path] + vms, environment: ["P": pass], directory: dir.url)
    }

    @Test(arguments: valid)
    func restoresLikeTheManifest(file: String) throws {
        let fixture = try Manifest.entry(file)
        for fromPipe in [false, true] {
            let dir = try ScratchDirectory()
            let r = try Self.restore(file, into: dir, extra: ["--dom0-home"], fromPipe: fromPipe)
            #expect(r.status == 0, "\(file): \(r.stderr)")
            let problems = try Manifest.mismatches(fixture, under: dir.file("target"), place: Manifest.restoredPlace)
            #expect(problems.isEmpty, "\(file) (pipe: \(fromPipe)): \(problems)")
            // Nothing but VM directories in the target, nothing left over in temporary names.
            #expect(!dir.listing().contains { $0.contains(".qb-tmp") }, "\(file)")
            #expect(dir.listing().allSatisfy { $0 == "target" || $0.hasPrefix("target/") }, "\(dir.listing())")
        }
    }

    @Test(arguments: valid)
    func explainedPipelinesGiveTheSameBytes(file: String) throws {
        let fixture = try Manifest.entry(file)
        let dir = try ScratchDirectory()
        let explained = try run("qb-restore", ["--explain", "--dom0-home", "--passphrase", "env:P", "-C", "by-tools", Repo.fixture(file).path],
                                environment: ["P": fixture["passphrase"] as! String], directory: dir.url)
        #expect(explained.status == 0, "\(explained.stderr)")
        let script = explained.stdoutText
        #expect(script.contains("set -euo pipefail"))
        let commands = script.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(!script.contains("pass:") && !script.contains("'\(fixture["passphrase"] as! String)'"), "the passphrase itself must not be in the script")
        try script.write(to: dir.file("restore.sh"), atomically: true, encoding: .utf8)
        // The script runs nothing of qb-restore: its own tools, in a shell.
        #expect(!commands.contains { $0.contains("qb-restore") })
        let ran = try shell("mkdir by-tools && bash restore.sh > /dev/null", environment: ["P": fixture["passphrase"] as! String], directory: dir.url)
        #expect(ran.status == 0, "\(file): \(ran.stderr)")
        try FileManager.default.createDirectory(at: dir.file("target"), withIntermediateDirectories: true)
        let restored = try run("qb-restore", ["--dom0-home", "--passphrase", "env:P", "-C", "target", Repo.fixture(file).path],
                               environment: ["P": fixture["passphrase"] as! String], directory: dir.url)
        #expect(restored.status == 0)
        let diff = try run("diff", ["-r", "--no-dereference", "by-tools", "target"], directory: dir.url)
        #expect(diff.status == 0, "\(file): \(diff.stdoutText)")
        let problems = try Manifest.mismatches(fixture, under: dir.file("by-tools"), place: Manifest.restoredPlace)
        #expect(problems.isEmpty, "\(file): \(problems)")
    }

    @Test func listsTheVMsAfterAuthenticating() throws {
        let r = try run("qb-restore", ["--list", "--passphrase", "env:P", Repo.fixture("v3-aes-gzip.qubes").path], environment: ["P": "qubes"])
        #expect(r.status == 0, "\(r.stderr)")
        let names = r.stdoutText.split(separator: "\n").dropFirst(2).map { $0.split(separator: " ").first.map(String.init) ?? "" }
        #expect(names == ["work", "vault", "standalone"], "\(r.stdoutText)")
        let json = try run("qb-restore", ["--list", "--json", "--passphrase", "env:P", Repo.fixture("v4-gzip.qubes").path], environment: ["P": "qubes"])
        let parsed = try JSONSerialization.jsonObject(with: json.stdout) as? [[String: Any]]
        #expect(parsed?.compactMap { $0["name"] as? String }.sorted() == ["standalone", "vault", "work"], "\(json.stdoutText)")
        let wrong = try run("qb-restore", ["--list", "--passphrase", "env:P", Repo.fixture("v3-aes-gzip.qubes").path], environment: ["P": "nope"])
        #expect(wrong.status == 1)
        #expect(wrong.stdout.isEmpty)
        #expect(wrong.stderr == "qb-restore: backup-header: hmac does not match (wrong passphrase or tampered backup)\n")
    }

    /// -C DIR is created with its parents when missing, as unzip -d does.
    @Test func aMissingTargetDirectoryIsCreated() throws {
        let dir = try ScratchDirectory()
        let r = try run("qb-restore", ["-C", "new/deeper", "--passphrase", "env:P", Repo.fixture("v4-gzip.qubes").path, "work"],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        let problems = try Manifest.mismatches(try Manifest.entry("v4-gzip.qubes"), under: dir.file("new/deeper")) { vm, subdir, path in
            vm == "work" ? Manifest.restoredPlace(vm, subdir, path) : nil
        }
        #expect(problems.isEmpty, "\(problems)")
        // A file in the way is still an error, naming it.
        try Data().write(to: dir.file("plain"))
        let blocked = try run("qb-restore", ["-C", "plain/sub", "--passphrase", "env:P", Repo.fixture("v4-gzip.qubes").path, "work"],
                              environment: ["P": "qubes"], directory: dir.url)
        #expect(blocked.status == 4)
        #expect(blocked.stderr.contains("plain: cannot create directory: Not a directory"), "\(blocked.stderr)")
    }

    @Test func restoresOnlyTheNamedVMs() throws {
        let dir = try ScratchDirectory()
        let r = try Self.restore("v4-gzip.qubes", into: dir, vms: ["work"], fromPipe: true)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(dir.listing().filter { !$0.dropFirst("target/".count).contains("/") && $0 != "target" } == ["target/work"])
        let fixture = try Manifest.entry("v4-gzip.qubes")
        let problems = try Manifest.mismatches(fixture, under: dir.file("target")) { vm, subdir, path in
            vm == "work" ? Manifest.restoredPlace(vm, subdir, path) : nil
        }
        #expect(problems.isEmpty, "\(problems)")
        // Again into the same place: the VM's directory exists, so nothing is touched.
        let again = try Self.restore("v4-gzip.qubes", into: dir, vms: ["work"])
        #expect(again.status == 2)
        #expect(again.stderr.contains("target/work: already exists"), "\(again.stderr)")
    }

    @Test func unknownVMNamesAreAUsageError() throws {
        let dir = try ScratchDirectory()
        let r = try Self.restore("v3-aes-gzip.qubes", into: dir, vms: ["personal"])
        #expect(r.status == 2)
        #expect(r.stderr == "qb-restore: personal: no such VM in the backup (it holds: work, vault, standalone)\n", "\(r.stderr)")
        #expect(dir.listing() == ["target"])
    }

    @Test func verifyOnlyChecksEverythingAndWritesNothing() throws {
        for file in Self.valid {
            let dir = try ScratchDirectory()
            let r = try Self.restore(file, into: dir, extra: ["--verify-only"])
            #expect(r.status == 0, "\(file): \(r.stderr)")
            #expect(r.stdoutText.hasSuffix(": OK (\((try Manifest.entry(file)["chunks"] as! [String: Int]).count - 1) files authenticated and read to their end)\n"),
                    "\(file): \(r.stdoutText)")
            #expect(dir.listing() == ["target"], "\(file)")
        }
        // A damaged chunk of a VM nobody asked for still fails verification.
        let dir = try ScratchDirectory()
        let r = try Self.restore("v3-flipped-byte.qubes", into: dir, extra: ["--verify-only"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("vm9/private.img.001: hmac does not match"))
        #expect(dir.listing() == ["target"])
    }

    /// fixture → exit status, words of the one error line, the restored file
    /// that must not exist (nil: nothing at all may be written).
    static let refusals: [(String, Int32, String, String?)] = [
        ("v3-swapped-chunks.qubes", 3, "vm9/private.img: chunk out of order", "standalone/private.img"),
        ("v3-missing-middle-chunk.qubes", 3, "vm9/private.img: chunk out of order", "standalone/private.img"),
        ("v3-missing-last-chunk.qubes", 3, "vm9/private.img: the file ends before its last chunk", "standalone/private.img"),
        ("v4-missing-middle-chunk.qubes", 3, "vm9/private.img: chunk out of order", "standalone/private.img"),
        ("v4-swapped-chunks.qubes", 3, "vm9/private.img: chunk out of order", "standalone/private.img"),
        ("v4-renamed-chunk.qubes", 1, "vm3/private.img.000.enc: the passphrase does not open", "work/private.img"),
        ("v3-truncated.qubes", 3, "truncated", "standalone/private.img"),
        ("v3-flipped-byte.qubes", 1, "vm9/private.img.001: hmac does not match", "standalone/private.img"),
        ("v4-flipped-byte.qubes", 1, "vm9/private.img.001.enc: scrypt envelope does not authenticate", "standalone/private.img"),
        ("v3-qsb51-shell.qubes", 3, "Security Bulletin 51", nil),
        ("v4-qsb51-program.qubes", 3, "Security Bulletin 51", nil),
        ("v3-qsb51-args.qubes", 3, "Security Bulletin 51", nil),
        ("v3-duplicate-key.qubes", 3, "backup-header: duplicated header line", nil),
        ("v3-oversized-hmac.qubes", 3, "qubes.xml.000.hmac: .hmac file is larger than 4096 bytes", nil),
        ("v4-inner-dotdot.qubes", 3, "'..' component", "vm3/private.img"),
        ("v4-inner-absolute.qubes", 3, "absolute member name", "vm3/private.img"),
        ("v4-inner-symlink.qubes", 3, "lies outside vm3/private.img", "vm3/private.img"),
    ]

    @Test(arguments: refusals.map(\.0))
    func tamperedBackupsAreRefused(file: String) throws {
        let (_, status, words, damaged) = Self.refusals.first { $0.0 == file }!
        let dir = try ScratchDirectory()
        let r = try Self.restore(file, into: dir, extra: ["--dom0-home"])
        #expect(r.status == status, "\(file): \(r.stderr)")
        let errors = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("qb-restore: warning: ") }
        #expect(errors.count == 1 && errors[0].hasPrefix("qb-restore: ") && errors[0].contains(words), "\(file): \(r.stderr)")
        let listing = dir.listing()
        #expect(listing.allSatisfy { $0 == "target" || $0.hasPrefix("target/") }, "\(file): \(listing)")
        #expect(!listing.contains { $0.contains(".qb-tmp") || $0.contains("escape") }, "\(file): \(listing)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escape-absolute-qb"))
        if let damaged {
            #expect(!FileManager.default.fileExists(atPath: dir.file("target/" + damaged).path), "\(file): \(damaged) looks restored")
        } else {
            #expect(listing == ["target"], "\(file): \(listing)")
        }
    }

    @Test func wrongPassphraseWritesNothing() throws {
        for file in ["v2-aes-gzip.qubes", "v3-aes-gzip.qubes", "v4-gzip.qubes"] {
            let dir = try ScratchDirectory()
            let r = try Self.restore(file, into: dir, passphrase: "not the passphrase")
            #expect(r.status == 1, "\(file)")
            #expect(r.stderr.hasPrefix("qb-restore: backup-header: "), "\(r.stderr)")
            #expect(dir.listing() == ["target"])
        }
    }

    /// A byte flipped in chunk k of n, for every k: qb-restore and the
    /// explained pipeline both fail, name the chunk, and leave no
    /// complete-looking image.
    @Test func aFlippedByteInAnyChunkStopsTheRestore() throws {
        let fixture = try Manifest.entry("v3-aes-gzip.qubes")
        let chunks = (fixture["chunks"] as! [String: Int])["vm9/root.img"]!
        for k in 0..<chunks {
            let dir = try ScratchDirectory()
            let member = "vm9/root.img." + String(format: "%03d", k)
            let flip = try run("python3", ["-c", """
                import sys, tarfile
                data = bytearray(open(sys.argv[1], 'rb').read())
                with tarfile.open(sys.argv[1], ignore_zeros=True) as t:
                    m = t.getmember(sys.argv[2])
                data[m.offset_data + m.size // 2] ^= 0x20
                open(sys.argv[3], 'wb').write(data)
                """, Repo.fixture("v3-aes-gzip.qubes").path, member, dir.file("tampered.qubes").path])
            #expect(flip.status == 0, "\(flip.stderr)")
            try FileManager.default.createDirectory(at: dir.file("target"), withIntermediateDirectories: true)
            let r = try run("qb-restore", ["--passphrase", "env:P", "-C", "target", "tampered.qubes"], environment: ["P": "qubes"], directory: dir.url)
            #expect(r.status == 1, "chunk \(k): \(r.stderr)")
            #expect(r.stderr.contains("\(member): hmac does not match"), "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("target/standalone/root.img").path))
            let explained = try run("qb-restore", ["--explain", "--passphrase", "env:P", "-C", "tools", "tampered.qubes", "standalone"],
                                    environment: ["P": "qubes"], directory: dir.url)
            try explained.stdoutText.write(to: dir.file("restore.sh"), atomically: true, encoding: .utf8)
            let ran = try shell("mkdir tools && bash restore.sh > /dev/null", environment: ["P": "qubes"], directory: dir.url)
            // pipefail reports the rightmost failure; the first line names the cause.
            #expect(ran.status != 0, "chunk \(k): \(ran.stderr)")
            #expect(ran.stderr.contains("qb-hmac: \(member): hmac does not match"), "\(ran.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("tools/standalone/root.img").path))
            #expect(!dir.listing().contains { $0.contains(".qb-tmp") })
        }
    }

    /// With a second core, qubes.xml's key is derived while the header's
    /// is, under the backup-id the header claims. A header whose backup-id
    /// was changed must still be refused at the header, by every -j, with
    /// nothing written; one left as it was restores the same either way.
    @Test(arguments: ["1", "2"])
    func aV4HeaderIsAuthenticatedBeforeItsBackupIDIsUsed(jobs: String) throws {
        let dir = try ScratchDirectory()
        let edit = try run("python3", ["-c", """
            import sys
            data = bytearray(open(sys.argv[1], 'rb').read())
            old = b'backup-id=20'
            at = data.index(old)
            assert data.find(old, at + 1) == -1
            data[at:at + len(old)] = b'backup-id=19'
            open(sys.argv[2], 'wb').write(data)
            """, Repo.fixture("v4-gzip.qubes").path, dir.file("tampered.qubes").path])
        #expect(edit.status == 0, "\(edit.stderr)")
        try FileManager.default.createDirectory(at: dir.file("target"), withIntermediateDirectories: true)
        let r = try run("qb-restore", ["-j", jobs, "--passphrase", "env:P", "-C", "target", "tampered.qubes"],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr == "qb-restore: backup-header: does not match its authenticated copy (wrong passphrase or tampered backup)\n")
        #expect(dir.listing().allSatisfy { !$0.hasPrefix("target/") }, "\(dir.listing())")

        let good = try Self.restore("v4-gzip.qubes", into: dir, extra: ["-j", jobs], vms: ["work"])
        #expect(good.status == 0, "\(good.stderr)")
        let problems = try Manifest.mismatches(try Manifest.entry("v4-gzip.qubes"), under: dir.file("target")) { vm, subdir, path in
            vm == "work" ? Manifest.restoredPlace(vm, subdir, path) : nil
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(dir.listing().contains("target/work/private.img"), "\(dir.listing())")
    }

    @Test func aBackupReadFromATerminalOrWithoutPassphraseIsRefused() throws {
        let r = try shell("setsid -w qb-restore --list \(Repo.fixture("v3-aes-gzip.qubes").path) < /dev/null")
        #expect(r.status == 2)
        #expect(r.stderr.contains("no terminal to ask for the passphrase"), "\(r.stderr)")
    }
}
