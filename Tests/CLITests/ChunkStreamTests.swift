import Foundation
import Testing
import QBTestSupport

/// `qb-untar -i --tar 'FILE.*' | qb-decrypt --chunks`: the v4 stream mode.
@Suite struct ChunkStreamTests {
    static let id = "20261101T101500-4711"

    func chunks(_ fixture: String, _ file: String, jobs: Int = 2, id: String = id, password: String = "qubes") throws -> RunResult {
        try shell("qb-untar -i --tar '\(file).*' -f '\(Repo.fixture(fixture).path)' | qb-decrypt --chunks -j \(jobs) --backup-id \(id) --passphrase env:P",
                  environment: ["P": password])
    }

    /// The same bytes as the manual procedure: scrypt dec of every chunk in order.
    func reference(_ fixture: String, _ file: String, count: Int, id: String = id) throws -> Data {
        let dir = try ScratchDirectory()
        try extractWithGNUTar(fixture, [], into: dir)
        let names = (0..<count).map { "'\(file).\(String(format: "%03d", $0))'" }.joined(separator: " ")
        let r = try shell("for n in \(names); do printf '%s\\n' \"$ID!$n!$P\" | scrypt dec -P \"$n.enc\" || exit 1; done",
                          environment: ["P": "qubes", "ID": id], directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        return r.stdout
    }

    @Test(arguments: [1, 2, 4])
    func equalsTheManualProcedure(jobs: Int) throws {
        for (file, count) in [("vm9/private.img", 3), ("vm9/root.img", 3), ("vm3/private.img", 2), ("qubes.xml", 1)] {
            let ours = try chunks("v4-gzip.qubes", file, jobs: jobs)
            #expect(ours.status == 0, "\(file): \(ours.stderr)")
            #expect(ours.stdout == (try reference("v4-gzip.qubes", file, count: count)), "\(file) with -j \(jobs)")
        }
    }

    @Test func readsTheBackupIDFromTheHeader() throws {
        let dir = try ScratchDirectory()
        try extractWithGNUTar("v4-xz.qubes", ["backup-header"], into: dir)
        let r = try shell("qb-untar -i --tar 'vm3/private.img.*' -f '\(Repo.fixture("v4-xz.qubes").path)' | qb-decrypt --chunks --header backup-header --passphrase env:P | qb-decompress -f xz | qb-untar -t",
                          environment: ["P": "open sesame"], directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutText == "vm3/private.img\n")
    }

    @Test(arguments: [
        ("v4-swapped-chunks.qubes", "vm9/private.img", 3, "chunk out of order: expected vm9/private.img.001.enc"),
        ("v4-missing-middle-chunk.qubes", "vm9/private.img", 3, "chunk out of order: expected vm9/private.img.001.enc"),
        ("v4-renamed-chunk.qubes", "vm3/private.img", 3, "the passphrase does not open the scrypt envelope (wrong passphrase, or the chunk was renamed or comes from another backup)"),
        ("v4-flipped-byte.qubes", "vm9/private.img", 3, "scrypt envelope does not authenticate"),
    ])
    func tamperedStreamsAreRefused(fixture: String, file: String, status: Int32, message: String) throws {
        for jobs in [1, 2] {
            let r = try chunks(fixture, file, jobs: jobs)
            #expect(r.status != 0, "\(fixture) -j \(jobs)")
            #expect(r.stderr.contains(message), "\(fixture): \(r.stderr)")
            // Whatever came out is whole, authenticated chunks from the start of the genuine file.
            let genuine = try reference("v4-gzip.qubes", file, count: 1)
            #expect(r.stdout.isEmpty || r.stdout == genuine, "\(fixture) -j \(jobs): \(r.stdout.count) bytes out")
        }
    }

    @Test func otherBackupIDWrongPassphraseAndMixedFiles() throws {
        for (id, pass) in [("20261101T101500-4712", "qubes"), (Self.id, "qubesx")] {
            let r = try chunks("v4-gzip.qubes", "vm3/private.img", id: id, password: pass)
            #expect(r.status == 1)
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.contains("the passphrase does not open the scrypt envelope"))
        }
        let mixed = try chunks("v4-gzip.qubes", "vm3/*")
        #expect(mixed.status == 3)
        #expect(mixed.stderr.contains("chunk of another file in the stream"))
    }
}
