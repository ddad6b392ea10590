import Foundation
import Testing
import QBTestSupport

@Suite struct DecryptToolTests {
    static let ciphers = ["aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "camellia-256-cbc", "aes-256-ctr"]

    @Test(arguments: ciphers)
    func decryptsWhatOpenSSLEncrypts(cipher: String) throws {
        let dir = try ScratchDirectory()
        for md in ["md5", "sha256"] {
            for size in [0, 1, 15, 16, 17, 3_000_001] {
                let plain = Data((0..<size).map { _ in UInt8.random(in: 0...255) })
                try plain.write(to: dir.file("plain"))
                let enc = try run("openssl", ["enc", "-e", "-\(cipher)", "-md", md, "-pass", "env:P", "-in", "plain", "-out", "enc"],
                                  environment: ["P": "pass \(size)"], directory: dir.url)
                #expect(enc.status == 0)
                let r = try run("qb-decrypt", ["-c", cipher, "--md", md, "--passphrase", "env:P", "enc"],
                                environment: ["P": "pass \(size)"], directory: dir.url)
                #expect(r.status == 0, "\(cipher) \(md) \(size): \(r.stderr)")
                #expect(r.stdout == plain, "\(cipher) \(md) \(size)")
            }
        }
    }

    @Test func defaultIsWhatQubesWrote() throws {
        // The documented v3 pipeline: the chunks of qubes.xml, decrypted with MD5 key derivation.
        let dir = try ScratchDirectory()
        try extractWithGNUTar("v3-aes-gzip.qubes", ["qubes.xml.000"], into: dir)
        let ours = try shell("qb-decrypt --passphrase env:P < qubes.xml.000 | gzip -dc | tar -xO qubes.xml | sha256sum",
                             environment: ["P": "qubes"], directory: dir.url)
        #expect(ours.stdoutText.hasPrefix("2f0b0c29553ce0b927634df9c93b91425cb22485f4b4e7c8b1567777fe53d99e"))
    }

    @Test func wrongPassphraseAndTruncationFail() throws {
        let dir = try ScratchDirectory()
        try Data(repeating: 7, count: 100_000).write(to: dir.file("plain"))
        _ = try run("openssl", ["enc", "-e", "-aes-256-cbc", "-md", "md5", "-pass", "pass:right", "-in", "plain", "-out", "enc"], directory: dir.url)
        let wrong = try run("qb-decrypt", ["--passphrase", "env:P", "enc"], environment: ["P": "wrong"], directory: dir.url)
        #expect(wrong.status == 1)
        #expect(wrong.stderr == "qb-decrypt: enc: bad padding at the end of the stream (wrong passphrase or corrupted data)\n")
        let data = try Data(contentsOf: dir.file("enc"))
        for cut in [0, 8, 15, 16, 17, 1000, data.count - 1] {
            let r = try run("qb-decrypt", ["--passphrase", "env:P"], stdin: data.prefix(cut), environment: ["P": "right"])
            // A stream cut inside its last block can only be caught at the
            // end: the status is what a pipeline under pipefail sees.
            #expect(r.status == (cut < 16 ? 3 : 1), "cut at \(cut): \(r.stderr)")
        }
        let plain = try run("qb-decrypt", ["--passphrase", "env:P", "plain"], environment: ["P": "right"], directory: dir.url)
        #expect(plain.status == 3)
        #expect(plain.stdout.isEmpty)
        #expect(plain.stderr.contains("not an openssl enc stream"))
        let cipher = try run("qb-decrypt", ["-c", "aes-256-gcm", "--passphrase", "env:P", "enc"], environment: ["P": "right"], directory: dir.url)
        #expect(cipher.status == 3)
        #expect(cipher.stderr.contains("unknown or unusable cipher 'aes-256-gcm'"))
    }

    @Test func scryptEnvelopesFromTheRealTool() throws {
        let dir = try ScratchDirectory()
        for (logN, r, p) in [(10, 8, 1), (12, 4, 2), (14, 1, 1)] {
            let plain = Data((0..<50_000).map { _ in UInt8.random(in: 0...255) })
            try plain.write(to: dir.file("plain"))
            let made = try shell("printf '%s\\n' \"$P\" | scrypt enc -P --logN \(logN) -r \(r) -p \(p) plain env", environment: ["P": "p w"], directory: dir.url)
            #expect(made.status == 0, "\(made.stderr)")
            let out = try run("qb-decrypt", ["--scrypt", "--passphrase", "env:P", "env"], environment: ["P": "p w"], directory: dir.url)
            #expect(out.status == 0, "\(out.stderr)")
            #expect(out.stdout == plain)
        }
    }

    /// A v4 chunk's passphrase binds the backup-id and the member name: the
    /// renamed-chunk and other-backup attacks fail before any byte is written.
    @Test func v4ChunksAreBoundToNameAndBackup() throws {
        let dir = try ScratchDirectory()
        try extractWithGNUTar("v4-gzip.qubes", ["vm3/private.img.000.enc", "vm9/private.img.001.enc"], into: dir)
        let id = "20261101T101500-4711"
        let reference = try shell("printf '%s\\n' \"$ID!vm3/private.img.000!$P\" | scrypt dec -P vm3/private.img.000.enc",
                                  environment: ["P": "qubes", "ID": id], directory: dir.url)
        let good = try run("qb-decrypt", ["--scrypt", "--backup-id", id, "--name", "vm3/private.img.000", "--passphrase", "env:P", "vm3/private.img.000.enc"],
                           environment: ["P": "qubes"], directory: dir.url)
        #expect(good.status == 0)
        #expect(good.stdout == reference.stdout && !good.stdout.isEmpty)
        for (args, pass) in [(["--backup-id", id, "--name", "vm9/private.img.000"], "qubes"),
                             (["--backup-id", "20261101T101500-4712", "--name", "vm3/private.img.000"], "qubes"),
                             (["--backup-id", id, "--name", "vm3/private.img.000"], "qubesx")] {
            let r = try run("qb-decrypt", ["--scrypt"] + args + ["--passphrase", "env:P", "vm3/private.img.000.enc"],
                            environment: ["P": pass], directory: dir.url)
            #expect(r.status == 1)
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.hasSuffix("the passphrase does not open the scrypt envelope (wrong passphrase, or the chunk was renamed or comes from another backup)\n"))
        }
        // A flipped byte in the body or the trailing MAC: nothing released.
        var bytes = [UInt8](try Data(contentsOf: dir.file("vm3/private.img.000.enc")))
        for position in [100, bytes.count / 2, bytes.count - 1] {
            bytes[position] ^= 0x20
            try Data(bytes).write(to: dir.file("bad.enc"))
            bytes[position] ^= 0x20
            let r = try run("qb-decrypt", ["--scrypt", "--backup-id", id, "--name", "vm3/private.img.000", "--passphrase", "env:P", "bad.enc"],
                            environment: ["P": "qubes"], directory: dir.url)
            #expect(r.status == 1, "flip at \(position)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.contains("scrypt envelope does not authenticate (modified or truncated data; tampered backup)"))
        }
        let truncated = try run("qb-decrypt", ["--scrypt", "--passphrase", "env:P"], stdin: Data(bytes.prefix(95)), environment: ["P": "qubes"])
        #expect(truncated.status == 3)
        #expect(truncated.stdout.isEmpty)
        let limit = try run("qb-decrypt", ["--scrypt", "--max-memory", "1000000", "--passphrase", "env:P", "vm3/private.img.000.enc"],
                            environment: ["P": "qubes"], directory: dir.url)
        #expect(limit.status == 3)
        #expect(limit.stderr.contains("over the limit of 1000000 bytes (raise --max-memory to at least 1051648"), "\(limit.stderr)")
    }
}
