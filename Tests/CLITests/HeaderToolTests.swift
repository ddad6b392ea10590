import Foundation
import Testing
import QBTestSupport

@Suite struct HeaderToolTests {
    func header(of fixture: String) throws -> ScratchDirectory {
        let dir = try ScratchDirectory()
        try extractWithGNUTar(fixture, ["backup-header", "backup-header.hmac"], into: dir)
        return dir
    }

    @Test func validV3HeadersVerifyAndPrint() throws {
        for fixture in try Manifest.load().fixtures where fixture.valid && fixture.version == 3 {
            let dir = try header(of: fixture.file)
            let r = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                            environment: ["P": fixture.passphrase!], directory: dir.url)
            #expect(r.status == 0, "\(fixture.file): \(r.stderr)")
            #expect(r.stderr.isEmpty)
            // The validated lines are the header's own lines.
            #expect(r.stdout == (try Data(contentsOf: dir.file("backup-header"))))
            let json = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "--json", "backup-header"],
                               environment: ["P": fixture.passphrase!], directory: dir.url)
            let object = try #require(try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any])
            #expect(object["version"] as? Int == 3)
            #expect(object["encrypted"] as? Bool == fixture.encrypted)
            #expect(object["compression-filter"] as? String == fixture.compression)
            #expect(object["authenticated"] as? String == "hmac-sha512")
        }
    }

    @Test func validV4HeadersVerifyThroughTheirScryptCopy() throws {
        for fixture in try Manifest.load().fixtures where fixture.valid && fixture.version == 4 {
            let dir = try header(of: fixture.file)
            let r = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "--get", "backup-id", "backup-header"],
                            environment: ["P": fixture.passphrase!], directory: dir.url)
            #expect(r.status == 0, "\(fixture.file): \(r.stderr)")
            #expect(r.stdoutText == fixture.backup_id! + "\n")
            let hmac = try run("qb-hmac", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                               environment: ["P": fixture.passphrase!], directory: dir.url)
            #expect(hmac.stdoutText == "backup-header: OK\n")
            // The scrypt copy is bound to the name backup-header.
            try FileManager.default.copyItem(at: dir.file("backup-header"), to: dir.file("other-name"))
            let renamed = try run("qb-hmac", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "other-name"],
                                  environment: ["P": fixture.passphrase!], directory: dir.url)
            #expect(renamed.status == 1)
            #expect(renamed.stdoutText == "other-name: FAILED\n")
        }
    }

    @Test func v4WrongPassphraseAndTamperedHeader() throws {
        let dir = try header(of: "v4-gzip.qubes")
        let wrong = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                            environment: ["P": "qubesx"], directory: dir.url)
        #expect(wrong.status == 1)
        #expect(wrong.stdout.isEmpty)
        #expect(wrong.stderr == "qb-header: backup-header: the passphrase does not open the scrypt envelope (wrong passphrase or tampered backup)\n")
        var text = try String(contentsOf: dir.file("backup-header"), encoding: .utf8)
        text = text.replacingOccurrences(of: "compression-filter=gzip", with: "compression-filter=xz")
        try Data(text.utf8).write(to: dir.file("backup-header"))
        let tampered = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                               environment: ["P": "qubes"], directory: dir.url)
        #expect(tampered.status == 1)
        #expect(tampered.stdout.isEmpty)
        #expect(tampered.stderr == "qb-header: backup-header: does not match its authenticated copy (wrong passphrase or tampered backup)\n")
        // A hostile scrypt copy asking for absurd work is refused before any allocation.
        var envelope = [UInt8](try Data(contentsOf: dir.file("backup-header.hmac")))
        envelope[7] = 40
        try Data(envelope).write(to: dir.file("backup-header.hmac"))
        let costly = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                             environment: ["P": "qubes"], directory: dir.url)
        #expect(costly.status == 3)
        #expect(costly.stdout.isEmpty)
        #expect(costly.stderr.contains("scrypt header checksum does not match"))
    }

    @Test func shellOutputIsSafeToEval() throws {
        let dir = try header(of: "v3-aes-gzip.qubes")
        let r = try shell("""
            eval "$(qb-header --verify backup-header.hmac --passphrase env:P --shell backup-header)"
            echo "$QB_VERSION $QB_COMPRESSION_FILTER $QB_ENCRYPTED $QB_AUTHENTICATED"
            """, environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutText == "3 gzip true hmac-sha512\n")
        let get = try run("qb-header", ["--get", "crypto-algorithm", "backup-header"], directory: dir.url)
        #expect(get.stdoutText == "aes-256-cbc\n")
        #expect(get.stderr.contains("warning: backup-header is not authenticated"))
    }

    @Test func wrongPassphrasePrintsNothing() throws {
        let dir = try header(of: "v3-aes-gzip.qubes")
        let r = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                        environment: ["P": "not it"], directory: dir.url)
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr == "qb-header: backup-header: hmac does not match (wrong passphrase or tampered backup)\n")
    }

    @Test(arguments: ["v3-qsb51-shell.qubes", "v3-qsb51-args.qubes", "v4-qsb51-program.qubes"])
    func qsb51FiltersAreRefused(fixture: String) throws {
        let dir = try header(of: fixture)
        // Authentic headers (the QSB-51 attacker knows the passphrase): refused after authentication.
        let r = try run("qb-header", ["backup-header"], directory: dir.url)
        #expect(r.status == 3)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("compression filter '"))
        #expect(r.stderr.contains("is refused"))
        #expect(r.stderr.contains("Qubes Security Bulletin 51"))
    }

    @Test func v3QSB51HeaderIsAuthenticThenRefused() throws {
        let dir = try header(of: "v3-qsb51-shell.qubes")
        let r = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 3)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr == "qb-header: backup-header: compression filter 'sh -c id' is refused (Qubes Security Bulletin 51: qb never runs a program named by a backup; allowed: gzip, pigz, bzip2, pbzip2, xz, lzma, zstd, zstdmt)\n")
    }

    @Test func duplicateKeyIsRefused() throws {
        let dir = try header(of: "v3-duplicate-key.qubes")
        let r = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 3)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr == "qb-header: backup-header: duplicated header line 'version'\n")
    }

    @Test func oversizedHMACIsRefused() throws {
        let dir = try ScratchDirectory()
        try Data("version=3\n".utf8).write(to: dir.file("backup-header"))
        try Data(repeating: 0x41, count: 8192).write(to: dir.file("backup-header.hmac"))
        let r = try run("qb-header", ["--verify", "backup-header.hmac", "--passphrase", "env:P", "backup-header"],
                        environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 3)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("larger than 4096 bytes"))
    }

    /// The VM listing must agree with the manifest; qubes.xml is recovered
    /// with the documented manual procedure (real openssl, scrypt, gzip, tar).
    @Test func vmListingMatchesManifest() throws {
        let manifest = try Manifest.json()["fixtures"] as! [[String: Any]]
        for fixture in manifest where fixture["valid"] as? Bool == true {
            let file = fixture["file"] as! String, pass = fixture["passphrase"] as! String
            let version = fixture["version"] as! Int
            if version == 4 && !haveProgram("scrypt") { continue }
            let dir = try ScratchDirectory()
            try extractWithGNUTar(file, [], into: dir)
            let decompress = (fixture["compression"] as? String).map { c in c == "gzip" ? "gzip -dc" : "\(c) -dc" } ?? "cat"
            let script: String
            switch version {
            case 4: script = "printf '%s' \"$ID!qubes.xml.000!$P\" | scrypt dec -P qubes.xml.000.enc | \(decompress) | tar -xO qubes.xml > q.xml"
            case 3 where fixture["encrypted"] as? Bool == true:
                script = "cat qubes.xml.0?? | openssl enc -d -md MD5 -aes-256-cbc -pass env:P | \(decompress) | tar -xO qubes.xml > q.xml"
            case 3: script = "cat qubes.xml.0?? | \(decompress) | tar -xO qubes.xml > q.xml"
            default: script = "openssl enc -d -md MD5 -aes-256-cbc -pass env:P < qubes.xml.000 | gzip -dc | tar -xO qubes.xml > q.xml"
            }
            let made = try shell(script, environment: ["P": pass, "ID": fixture["backup_id"] as? String ?? ""], directory: dir.url)
            #expect(made.status == 0, "\(file): \(made.stderr)")
            let r = try run("qb-header", ["--vms", "--json", "q.xml"], directory: dir.url)
            #expect(r.status == 0, "\(file): \(r.stderr)")
            let listed = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [[String: Any]])
            let expected = (fixture["expected"] as! [String: Any]).compactMap { name, value -> (String, String)? in
                guard name != "dom0-home", let subdir = (value as? [String: Any])?["subdir"] as? String else { return nil }
                return (name, subdir)
            }
            #expect(Set(listed.map { "\($0["name"]!) \($0["subdir"]!)" }) == Set(expected.map { "\($0.0) \($0.1)" }), "\(file)")
            #expect(listed.allSatisfy { $0["included"] as? Bool == true })
            let everything = try run("qb-header", ["--vms", "--all", "--json", "q.xml"], directory: dir.url)
            let all = try #require(try JSONSerialization.jsonObject(with: everything.stdout) as? [[String: Any]])
            #expect(all.count > listed.count, "\(file): --all adds the VMs that are not in the backup")
        }
    }
}
