import Foundation
import Testing
import QBTestSupport

/// Pulls named members out of a fixture with GNU tar, the way step 1 of the
/// documented procedure does.
func extractWithGNUTar(_ fixture: String, _ members: [String], into dir: ScratchDirectory) throws {
    let r = try run("tar", ["-i", "-xf", Repo.fixture(fixture).path, "-C", dir.url.path] + members)
    #expect(r.status == 0, "tar: \(r.stderr)")
}

@Suite struct HMACToolTests {
    static let digests = ["sha512", "sha256", "sha1", "md5", "sha384", "sha224", "sha3-256", "blake2b512"]

    @Test(arguments: digests)
    func printsWhatOpenSSLPrints(digest: String) throws {
        let dir = try ScratchDirectory()
        for size in [0, 1, 127, 128, 129, 100_000] {
            let data = Data((0..<size).map { _ in UInt8.random(in: 0...255) })
            let path = dir.file("input-\(size)")
            try data.write(to: path)
            let key = "pass \(size) ü"
            let env = ["QB_TEST_PASS": key]
            let ours = try run("qb-hmac", ["-a", digest, "--passphrase", "env:QB_TEST_PASS"], stdin: data, environment: env)
            let theirs = try run("openssl", ["dgst", "-\(digest)", "-hmac", key], stdin: data)
            #expect(ours.status == 0)
            #expect(ours.stdoutText == theirs.stdoutText, "stdin, \(digest), \(size) bytes")
            // A named file gets OpenSSL's `HMAC-LABEL(file)=` form.
            let oursFile = try run("qb-hmac", ["-a", digest, "--passphrase", "env:QB_TEST_PASS", "input-\(size)"], environment: env, directory: dir.url)
            let theirsFile = try run("openssl", ["dgst", "-\(digest)", "-hmac", key, "input-\(size)"], directory: dir.url)
            #expect(oursFile.stdoutText == theirsFile.stdoutText, "file, \(digest), \(size) bytes")
        }
    }

    @Test func verifiesEveryV3FixtureHeaderAndChunk() throws {
        for fixture in try Manifest.load().fixtures where fixture.valid && (fixture.version ?? 0) < 4 {
            let dir = try ScratchDirectory()
            try extractWithGNUTar(fixture.file, [], into: dir)
            let hmacs = dir.listing().filter { $0.hasSuffix(".hmac") }
            #expect(hmacs.count > 2, "\(fixture.file)")
            for hmac in hmacs {
                let member = String(hmac.dropLast(5))
                let r = try run("qb-hmac", ["--verify", hmac, "--passphrase", "env:P", member],
                                environment: ["P": fixture.passphrase!], directory: dir.url)
                #expect(r.status == 0, "\(fixture.file) \(member): \(r.stderr)")
                #expect(r.stdoutText == "\(member): OK\n")
            }
        }
    }

    @Test func wrongPassphraseFails() throws {
        let dir = try ScratchDirectory()
        try extractWithGNUTar("v3-aes-gzip.qubes", ["backup-header", "backup-header.hmac"], into: dir)
        let r = try run("qb-hmac", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                        environment: ["P": "qubesx"], directory: dir.url)
        #expect(r.status == 1)
        #expect(r.stdoutText == "backup-header: FAILED\n")
        #expect(r.stderr == "qb-hmac: backup-header: hmac does not match (wrong passphrase or tampered backup)\n")
    }

    @Test func tamperedChunkFails() throws {
        let dir = try ScratchDirectory()
        try extractWithGNUTar("v3-flipped-byte.qubes", ["vm9/private.img.001", "vm9/private.img.001.hmac"], into: dir)
        let r = try run("qb-hmac", ["--verify", "vm9/private.img.001.hmac", "--passphrase", "env:P", "vm9/private.img.001"],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 1)
        #expect(r.stdoutText == "vm9/private.img.001: FAILED\n")
    }

    @Test func oversizedHMACFileIsRefusedUnread() throws {
        let dir = try ScratchDirectory()
        try extractWithGNUTar("v3-oversized-hmac.qubes", [], into: dir)
        let big = dir.listing().first { $0.hasSuffix(".hmac") && (try? Data(contentsOf: dir.file($0)).count) ?? 0 > 4096 }
        let hmac = try #require(big)
        let r = try run("qb-hmac", ["--verify", hmac, "--passphrase", "env:P", String(hmac.dropLast(5))],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 3)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("larger than 4096 bytes"))
    }

    @Test func everyOpenSSLLineFormatIsAccepted() throws {
        let dir = try ScratchDirectory()
        let data = Data("chunk bytes\n".utf8)
        try data.write(to: dir.file("x.000"))
        let hex = try run("openssl", ["dgst", "-sha512", "-hmac", "k", "-r"], stdin: data).stdoutText.prefix(128)
        for line in ["(stdin)= \(hex)\n", "SHA2-512(stdin)= \(hex)\n", "HMAC-SHA512(x.000)= \(hex)\n", "HMAC-SHA2-512(x.000)= \(hex)", "(stdin)= \(hex)\r\n"] {
            try Data(line.utf8).write(to: dir.file("x.000.hmac"))
            let r = try run("qb-hmac", ["--verify", "x.000.hmac", "--passphrase", "env:P", "x.000"], environment: ["P": "k"], directory: dir.url)
            #expect(r.status == 0, "\(line): \(r.stderr)")
        }
        for line in ["(stdin)= \(hex.uppercased())\n", "(stdin)=\(hex)\n", "\(hex)\n", "(stdin)= \(hex)\n\n", "(stdin)= \(hex.dropLast())\n"] {
            try Data(line.utf8).write(to: dir.file("x.000.hmac"))
            let r = try run("qb-hmac", ["--verify", "x.000.hmac", "--passphrase", "env:P", "x.000"], environment: ["P": "k"], directory: dir.url)
            #expect(r.status == 3, "\(line) should be malformed: \(r.stderr)")
            #expect(r.stderr.contains("invalid hmac file"))
        }
    }
}

@Suite struct PassphraseSourceTests {
    let data = Data("some data".utf8)

    func expected(_ key: String) throws -> String {
        try run("openssl", ["dgst", "-sha512", "-hmac", key], stdin: data).stdoutText
    }

    @Test func everySourceGivesTheSamePassphrase() throws {
        let dir = try ScratchDirectory()
        try Data("secret pass\nsecond line\n".utf8).write(to: dir.file("pw"))
        let want = try expected("secret pass")
        let viaEnv = try run("qb-hmac", ["--passphrase", "env:PW"], stdin: data, environment: ["PW": "secret pass"])
        let viaFile = try run("qb-hmac", ["--passphrase", "file:\(dir.file("pw").path)"], stdin: data)
        let viaFD = try shell("qb-hmac --passphrase fd:3 3<'\(dir.file("pw").path)' <<< 'some data' | head -c 1000",
                              directory: dir.url)
        let viaPass = try run("qb-hmac", ["--passphrase", "pass:secret pass"], stdin: data)
        #expect(viaEnv.stdoutText == want)
        #expect(viaFile.stdoutText == want)
        #expect(viaPass.stdoutText == want)
        #expect(viaPass.stderr.contains("warning: pass:TEXT puts the passphrase where other users can see it"))
        #expect(viaEnv.stderr.isEmpty)
        // <<< adds a newline to the data; compare with openssl on the same bytes.
        let wantFD = try run("openssl", ["dgst", "-sha512", "-hmac", "secret pass"], stdin: Data("some data\n".utf8)).stdoutText
        #expect(viaFD.stdoutText == wantFD)
    }

    @Test func noTerminalAndNoSourceIsAUsageError() throws {
        // setsid detaches the controlling terminal, as under cron or CI.
        let r = try run("setsid", ["-w", Repo.binaries.appendingPathComponent("qb-hmac").path], stdin: data)
        #expect(r.status == 2)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr == "qb-hmac: passphrase: no terminal to ask for the passphrase (give one with --passphrase env:VAR, file:PATH or fd:N)\n")
    }

    @Test(arguments: ["env:", "nope:x", "fd:x", "plain", "env:QB_SURELY_UNSET_VARIABLE"])
    func badSourcesAreUsageErrors(source: String) throws {
        let r = try run("qb-hmac", ["--passphrase", source], stdin: data)
        #expect(r.status == 2, "\(source): \(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.hasPrefix("qb-hmac: "))
    }
}
