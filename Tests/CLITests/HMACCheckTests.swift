import Foundation
import Testing
import QBTestSupport

/// `qb-hmac --check` on tar streams built with GNU tar from chunks whose
/// .hmac files were written by the real `openssl dgst -hmac`.
@Suite struct HMACCheckTests {
    /// The scripts here run with `set -e` and pipefail: a setup command that
    /// fails before the last one fails the script.
    @Test func scriptsStopAtTheirFirstFailure() throws {
        let dir = try ScratchDirectory()
        let r = try strictShell("false\ntouch reached", directory: dir.url)
        #expect(r.status != 0)
        #expect(!FileManager.default.fileExists(atPath: dir.file("reached").path))
        #expect(try strictShell("false | cat", directory: dir.url).status != 0)
    }

    /// Three chunks of `f` and their OpenSSL HMAC files, in a scratch directory.
    func chunks() throws -> ScratchDirectory {
        let dir = try ScratchDirectory()
        let r = try strictShell("""
            head -c 300000 /dev/urandom > data
            split -b 100000 -d -a 3 data f.
            for c in f.000 f.001 f.002; do openssl dgst -sha512 -hmac "$P" < $c > $c.hmac; done
            """, environment: ["P": "secret"], directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        return dir
    }

    func check(_ members: String, in dir: ScratchDirectory, extra: String = "") throws -> RunResult {
        try strictShell("tar --format=posix -cf - \(members) | qb-hmac --check --passphrase env:P \(extra) > out", environment: ["P": "secret"], directory: dir.url)
    }

    @Test func releasesVerifiedChunksInOrder() throws {
        let dir = try chunks()
        let r = try check("f.000 f.000.hmac f.001 f.001.hmac f.002 f.002.hmac", in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Data(contentsOf: dir.file("out")) == Data(contentsOf: dir.file("data")))
        // The concatenated archives of a Qubes backup, through qb-untar -i --tar.
        let outer = try strictShell("""
            for c in f.000 f.001 f.002; do tar --format=posix -cf - $c $c.hmac; done > backup
            qb-untar -i --tar 'f.[0-9]*' < backup | qb-hmac --check -j 1 --passphrase env:P > out2
            """, environment: ["P": "secret"], directory: dir.url)
        #expect(outer.status == 0, "\(outer.stderr)")
        #expect(try Data(contentsOf: dir.file("out2")) == Data(contentsOf: dir.file("data")))
    }

    @Test(arguments: [
        ("f.000 f.000.hmac f.002 f.002.hmac", 3, "chunk out of order: expected f.001, found f.002"),
        ("f.000 f.000.hmac f.002 f.002.hmac f.001 f.001.hmac", 3, "chunk out of order"),
        ("f.000 f.000.hmac f.000 f.000.hmac", 3, "chunk out of order: expected f.001, found f.000"),
        ("f.000 f.001 f.000.hmac", 3, "f.000 is not followed by its .hmac"),
        ("f.000.hmac f.000", 3, "an .hmac without its chunk"),
        ("f.000 f.000.hmac f.001", 3, "f.001 has no .hmac"),
        ("f.001 f.001.hmac", 3, "file starts at chunk 001, not 000"),
        ("f.000 f.001.hmac", 3, "f.000 is not followed by its .hmac"),
    ])
    func refusesGapsReorderingAndStrays(members: String, status: Int32, words: String) throws {
        let dir = try chunks()
        let r = try check(members, in: dir)
        #expect(r.status == status, "\(members): \(r.stderr)")
        #expect(r.stderr.hasPrefix("qb-hmac: ") && r.stderr.contains(words), "\(members): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        // Only whole, verified chunks were written before the refusal.
        let out = try Data(contentsOf: dir.file("out"))
        #expect(out.count % 100000 == 0)
    }

    @Test func aMismatchReleasesNothingOfThatChunk() throws {
        let dir = try chunks()
        let copied = try strictShell("cp f.001.hmac keep && cp f.000.hmac f.001.hmac", directory: dir.url)
        try #require(copied.status == 0, "\(copied.stderr)")
        let r = try check("f.000 f.000.hmac f.001 f.001.hmac f.002 f.002.hmac", in: dir)
        #expect(r.status == 1)
        #expect(r.stderr == "qb-hmac: f.001: hmac does not match (wrong passphrase or tampered backup)\n", "\(r.stderr)")
        #expect(try Data(contentsOf: dir.file("out")) == Data(contentsOf: dir.file("f.000")))
        let wrong = try strictShell("tar -cf - f.000 f.000.hmac | qb-hmac --check --passphrase env:P > out", environment: ["P": "other"], directory: dir.url)
        #expect(wrong.status == 1)
        #expect(try Data(contentsOf: dir.file("out")).isEmpty)
    }

    @Test func fromChecksOneVolumeAlone() throws {
        let dir = try chunks()
        let r = try check("f.001 f.001.hmac", in: dir, extra: "--from 1")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Data(contentsOf: dir.file("out")) == Data(contentsOf: dir.file("f.001")))
        let wrongStart = try check("f.002 f.002.hmac", in: dir, extra: "--from 1")
        #expect(wrongStart.status == 3)
    }

    @Test func chunksOverTheSizeLimitAreRefusedUnread() throws {
        let dir = try chunks()
        let r = try check("f.000 f.000.hmac", in: dir, extra: "--max-size 1000")
        #expect(r.status == 3)
        #expect(r.stderr.contains("f.000: chunk is larger than 1000 bytes"), "\(r.stderr)")
    }

    @Test func truncatedStreamsNeverSucceed() throws {
        let dir = try chunks()
        // Blocking factor 1: the archive ends with exactly two zero blocks, so
        // every cut below loses member data or the end marker.
        let made = try strictShell("tar --format=posix -b 1 -cf whole.tar f.000 f.000.hmac f.001 f.001.hmac", directory: dir.url)
        try #require(made.status == 0, "\(made.stderr)")
        let size = (try FileManager.default.attributesOfItem(atPath: dir.file("whole.tar").path)[.size] as! NSNumber).intValue
        for cut in stride(from: 0, to: size - 1024, by: 512 * 37) + [size - 1025, size - 1024, 1000, 100_513] {
            let r = try strictShell("head -c \(cut) whole.tar | qb-hmac --check --passphrase env:P > out", environment: ["P": "secret"], directory: dir.url)
            #expect(r.status == 3, "cut at \(cut): \(r.stderr)")
        }
    }
}

/// qb-untar --within and --strip-components on an archive made by GNU tar.
@Suite struct UntarRelocationTests {
    @Test func confinesAndMoves() throws {
        let dir = try ScratchDirectory()
        let r = try strictShell("""
            mkdir -p vm3/apps && echo image > vm3/private.img && echo app > vm3/apps/a.desktop && echo other > vm3/notes.txt
            tar -cf ok.tar vm3/apps && tar -cf bad.tar vm3/apps vm3/notes.txt
            mkdir moved && qb-untar -x --within vm3/apps --strip-components 1 -C moved < ok.tar
            """, directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try String(contentsOf: dir.file("moved/apps/a.desktop"), encoding: .utf8) == "app\n")
        let bad = try strictShell("mkdir bad && qb-untar -x --within vm3/apps -C bad < bad.tar", directory: dir.url)
        #expect(bad.status == 3)
        #expect(bad.stderr == "qb-untar: vm3/notes.txt: member lies outside vm3/apps (an archive of vm3/apps holds nothing else; hostile or damaged backup)\n",
                "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("bad/vm3/notes.txt").path))
        let listing = try strictShell("qb-untar -t --strip-components 1 < ok.tar", directory: dir.url)
        #expect(listing.stdoutText == "apps\napps/a.desktop\n", "\(listing.stdoutText)")
    }
}
