import Foundation
import Testing
import QBTestSupport

/// Issue 23 through the built tools: one small VM restored from a backup
/// that holds a 1.5 GiB VM before it reads at most 64 MiB from a file (the
/// kernel's count, `rchar` of /proc/PID/io), everything from a pipe, and a
/// cut backup is refused the same way both ways.
///
/// The backup is made at test time by Tests/Fixtures/seek/make-large-small.sh
/// with GNU tar, scrypt (logN 10) and openssl; the large VM's chunks are
/// holes of an envelope's size, so the file takes a few MiB of disk and a
/// second to make. A restore of the small VM must not read them, and
/// `--verify-only`, which reads everything, must refuse them.
@Suite struct SkippingCLITests {
    static let largeMiB = 1536
    static let limit = 64 << 20

    /// Runs a tool under a few lines of Python that wait for it with
    /// WNOWAIT, read its /proc/PID/io while it is a zombie (every byte it
    /// read is counted by then), and only then reap it; exits with its status.
    static let counter = """
        import os, subprocess, sys
        out, argv = sys.argv[1], sys.argv[2:]
        p = subprocess.Popen(argv)
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        with open('/proc/%d/io' % p.pid) as f:
            io = dict(line.split(': ') for line in f.read().splitlines())
        with open(out, 'w') as f:
            f.write(io['rchar'])
        status = p.wait()
        sys.exit(status if status >= 0 else 128 - status)
        """

    /// A scratch directory holding large-small.qubes, small-private.img and
    /// the counter.
    static func makeBackup(largeMiB: Int = largeMiB) throws -> ScratchDirectory {
        let dir = try ScratchDirectory()
        let made = try run(Repo.fixtures.appendingPathComponent("seek/make-large-small.sh").path,
                           [dir.url.path, String(largeMiB), "4", "placeholder"])
        #expect(made.status == 0, "\(made.stderr)")
        try counter.write(to: dir.file("rchar.py"), atomically: true, encoding: .utf8)
        return dir
    }

    /// Runs `command` (a shell line, where `COUNT tool args…` counts the
    /// reads of that tool) and returns its result and the bytes read.
    static func counted(_ command: String, in dir: ScratchDirectory) throws -> (RunResult, Int) {
        try? FileManager.default.removeItem(at: dir.file("rchar"))
        let r = try shell(command.replacingOccurrences(of: "COUNT ", with: "python3 rchar.py rchar "),
                          environment: ["P": "qubes"], directory: dir.url)
        let text = (try? String(contentsOf: dir.file("rchar"), encoding: .utf8)) ?? ""
        return (r, Int(text) ?? -1)
    }

    @Test func oneSmallVMAfterALargeOneReadsAtMost64MiBFromAFile() throws {
        let dir = try Self.makeBackup()
        let size = try #require(FileManager.default.attributesOfItem(atPath: dir.file("large-small.qubes").path)[.size] as? Int)
        #expect(size > Self.largeMiB << 20)

        let (file, fileRead) = try Self.counted("COUNT qb-restore --passphrase env:P -C from-file large-small.qubes small", in: dir)
        #expect(file.status == 0, "\(file.stderr)")
        #expect(fileRead > 0 && fileRead <= Self.limit, "\(fileRead) bytes read")
        #expect(try run("cmp", ["from-file/small/private.img", "small-private.img"], directory: dir.url).status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("from-file").path) == ["small"])

        // Standard input redirected from the file can seek too.
        let (redirected, redirectedRead) = try Self.counted("COUNT qb-restore --passphrase env:P -C redirected - small < large-small.qubes", in: dir)
        #expect(redirected.status == 0, "\(redirected.stderr)")
        #expect(redirectedRead > 0 && redirectedRead <= Self.limit, "\(redirectedRead) bytes read")
        #expect(try run("cmp", ["redirected/small/private.img", "small-private.img"], directory: dir.url).status == 0)

        // A pipe cannot: everything is read through, as before, to the same result.
        let (piped, pipeRead) = try Self.counted("cat large-small.qubes | COUNT qb-restore --passphrase env:P -C piped - small", in: dir)
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(pipeRead >= size, "\(pipeRead) bytes read from a pipe of \(size)")
        #expect(try run("cmp", ["piped/small/private.img", "small-private.img"], directory: dir.url).status == 0)
    }

    /// --list stops after qubes.xml; qb-untar reads headers and the members
    /// asked for; --verify-only reads (and authenticates) everything, so it
    /// refuses the placeholders a restore of "small" never reads.
    @Test func listingSelectingAndVerifying() throws {
        let dir = try Self.makeBackup()
        let (list, listRead) = try Self.counted("COUNT qb-restore --list --passphrase env:P large-small.qubes", in: dir)
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdoutText.contains("\nlarge ") && list.stdoutText.contains("\nsmall "), "\(list.stdoutText)")
        #expect(listRead > 0 && listRead <= 2 << 20, "\(listRead) bytes read")

        let (names, namesRead) = try Self.counted("COUNT qb-untar -i -t -f large-small.qubes", in: dir)
        #expect(names.status == 0, "\(names.stderr)")
        #expect(names.stdoutText.split(separator: "\n").count == 3 + 16 + 1, "\(names.stdoutText)")
        #expect(namesRead > 0 && namesRead <= 2 << 20, "\(namesRead) bytes read")

        let (extract, extractRead) = try Self.counted("mkdir x && COUNT qb-untar -i -x -C x -f large-small.qubes 'vm6/private.img.*'", in: dir)
        #expect(extract.status == 0, "\(extract.stderr)")
        #expect(extractRead > 0 && extractRead <= Self.limit, "\(extractRead) bytes read")
        let chunk = try FileManager.default.attributesOfItem(atPath: dir.file("x/vm6/private.img.000.enc").path)[.size] as? Int
        // GNU tar's archive of the 4 MiB image in one envelope.
        #expect(chunk == (512 + (4 << 20) + 1024 + 10_239) / 10_240 * 10_240 + 128, "\(String(describing: chunk))")

        let (verify, verifyRead) = try Self.counted("COUNT qb-restore --verify-only --passphrase env:P large-small.qubes", in: dir)
        #expect(verify.status == 3, "\(verify.stderr)")
        #expect(verify.stderr == "qb-restore: vm5/private.img.000.enc: not a scrypt envelope\n", "\(verify.stderr)")
        #expect(verifyRead > 100 << 20, "\(verifyRead) bytes read")
    }

    /// Cuts inside the large VM's skipped chunks, at the end of the large
    /// VM, and inside the small VM's chunk: restoring "small" from the file
    /// (seeking) and from a pipe (reading through) fail the same way, with
    /// the same message; seeking still reads little. A 320 MiB large VM
    /// (four chunks) is enough here and keeps the pipes short.
    @Test func aCutBackupIsRefusedAlikeFromAFileAndFromAPipe() throws {
        let dir = try Self.makeBackup(largeMiB: 320)
        let listing = try run("python3", ["-c", """
            import tarfile, sys
            with tarfile.open(sys.argv[1], ignore_zeros=True) as t:
                for m in t.getmembers():
                    print(m.name, m.offset, m.offset_data, m.size)
            """, dir.file("large-small.qubes").path])
        #expect(listing.status == 0, "\(listing.stderr)")
        var members: [String: (header: Int, data: Int, size: Int)] = [:]
        for line in listing.stdoutText.split(separator: "\n") {
            let f = line.split(separator: " ")
            members[String(f[0])] = (Int(f[1])!, Int(f[2])!, Int(f[3])!)
        }
        let first = try #require(members["vm5/private.img.000.enc"])
        let second = try #require(members["vm5/private.img.001.enc"])
        let last = try #require(members["vm5/private.img.003.enc"])
        let small = try #require(members["vm6/private.img.000.enc"])
        let cuts: [(Int, String)] = [
            (first.data + 1, "truncated archive"),
            (second.data + second.size / 2, "truncated archive"),
            (last.data + last.size, "truncated archive"),
            (last.data + last.size + 100, "truncated archive"),
            (small.header + 100, "truncated archive"),
            // Between the two VMs (tarfile's offset is where the member's
            // archive starts): a whole backup without the small VM, which
            // qubes.xml lists.
            (small.header, "truncated backup: VM 'small' (vm6/) has no files, though qubes.xml lists it"),
            (small.data + small.size / 2, "truncated archive"),
        ]
        for (cut, words) in cuts {
            #expect(try run("sh", ["-c", "rm -rf f p cut.qubes && cp --sparse=always large-small.qubes cut.qubes && truncate -s \(cut) cut.qubes"],
                            directory: dir.url).status == 0)
            let (file, fileRead) = try Self.counted("COUNT qb-restore --passphrase env:P -C f cut.qubes small", in: dir)
            let (piped, _) = try Self.counted("cat cut.qubes | COUNT qb-restore --passphrase env:P -C p - small", in: dir)
            #expect(file.status == 3, "cut at \(cut): \(file.stderr)")
            #expect(file.stderr.contains(words), "cut at \(cut): \(file.stderr)")
            #expect(piped.status == file.status && piped.stderr == file.stderr, "cut at \(cut): \(file.stderr) | \(piped.stderr)")
            #expect(fileRead <= Self.limit, "cut at \(cut): \(fileRead) bytes read")
            // Nothing that looks restored.
            #expect(!FileManager.default.fileExists(atPath: dir.file("f/small/private.img").path), "cut at \(cut)")
        }
    }
}
