import Foundation
import Testing
import QBTestSupport

/// Every valid v3 and v4 fixture restored with the small tools only, one
/// documented pipeline per backed-up file, must match the manifest byte for byte.
@Suite struct RestorePipelineTests {
    static let files = Manifest.files { $0.valid && ($0.version ?? 0) >= 3 }

    /// One case per valid v3 and v4 fixture: none when the manifest does not
    /// load, which must fail, not pass.
    @Test func hasItsCases() throws {
        _ = try Manifest.loaded.get()
        #expect(Self.files.count >= 10, "\(Self.files)")
    }

    @Test(arguments: files)
    func restoresLikeTheManifest(file: String) throws {
        let fixture = try Manifest.entry(file)
        let version = fixture["version"] as! Int
        let encrypted = fixture["encrypted"] as? Bool ?? true
        let filter = fixture["compression"] as? String
        let chunks = fixture["chunks"] as! [String: Int]
        let dir = try ScratchDirectory()
        let env = ["P": fixture["passphrase"] as! String, "ID": fixture["backup_id"] as? String ?? ""]
        // Step 1 with our own reader.
        let outer = try run("qb-untar", ["-i", "-x", "-C", dir.url.path, "-f", Repo.fixture(file).path])
        #expect(outer.status == 0, "\(outer.stderr)")
        for (name, count) in chunks.sorted(by: { $0.key < $1.key }) where name != "qubes.xml" {
            let numbers = (0..<count).map { String(format: "%03d", $0) }
            let decompress = filter.map { "qb-decompress -f \($0)" } ?? "cat"
            let script: String
            if version == 4 {
                let names = numbers.map { "'\(name).\($0)'" }.joined(separator: " ")
                script = """
                    for n in \(names); do qb-decrypt --scrypt --backup-id "$ID" --name "$n" --passphrase env:P "$n.enc" || exit 1; done \
                    | \(decompress) | qb-untar -x -C out
                    """
            } else {
                let files = numbers.map { "'\(name).\($0)'" }.joined(separator: " ")
                let decrypt = encrypted ? "qb-decrypt --passphrase env:P |" : ""
                script = """
                    for n in \(files); do qb-hmac --verify "$n.hmac" --passphrase env:P "$n" >/dev/null || exit 1; done
                    cat \(files) | \(decrypt) \(decompress) | qb-untar -x -C out
                    """
            }
            let r = try shell("mkdir -p out && " + script, environment: env, directory: dir.url)
            #expect(r.status == 0, "\(file) \(name): \(r.stderr)")
        }
        let problems = try Manifest.mismatches(fixture, under: dir.url.appendingPathComponent("out")) { _, _, path in path }
        #expect(problems.isEmpty, "\(file): \(problems)")
        // Nothing restored outside the output directory.
        #expect(!FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("vm3/private.img").path))
    }
}

/// Tampered fixtures through the same pipelines: a non-zero status under
/// pipefail, a line naming the problem, nothing outside the target.
@Suite struct RefusedPipelineTests {
    /// Runs the v4 pipeline over every `vm3/private.img` chunk present, in stream order.
    func v4Pipeline(_ fixture: String, file: String = "vm3/private.img", filter: String = "gzip") throws -> (RunResult, ScratchDirectory) {
        let dir = try ScratchDirectory()
        let listing = try run("qb-untar", ["-i", "-t", "-f", Repo.fixture(fixture).path])
        let chunks = listing.stdoutText.split(separator: "\n").map(String.init).filter { $0.hasPrefix(file + ".") }
        #expect(!chunks.isEmpty)
        _ = try run("qb-untar", ["-i", "-x", "-C", dir.url.path, "-f", Repo.fixture(fixture).path])
        let names = chunks.map { "'\($0.dropLast(4))'" }.joined(separator: " ")
        let r = try shell("""
            mkdir -p target/inside
            for n in \(names); do qb-decrypt --scrypt --backup-id "$ID" --name "$n" --passphrase env:P "$n.enc" || exit 1; done \
            | qb-decompress -f \(filter) | qb-untar -x -C target/inside
            """, environment: ["P": "qubes", "ID": "20261101T101500-4711"], directory: dir.url)
        return (r, dir)
    }

    @Test(arguments: [("v4-inner-dotdot.qubes", "'..'"), ("v4-inner-absolute.qubes", "absolute"), ("v4-inner-symlink.qubes", "symlink")])
    func hostileInnerArchivesAreRefused(fixture: String, word: String) throws {
        let (r, dir) = try v4Pipeline(fixture)
        #expect(r.status == 3, "\(fixture): \(r.stderr)")
        #expect(r.stderr.hasPrefix("qb-untar: "), "\(r.stderr)")
        #expect(r.stderr.lowercased().contains(word), "\(r.stderr)")
        // Nothing escaped the target: the only things outside target/inside are the extracted chunks.
        let outside = dir.listing().filter { !$0.hasPrefix("target/inside") && !$0.hasPrefix("vm") && !$0.hasPrefix("qubes.xml")
                                             && !$0.hasPrefix("backup-header") && !$0.hasPrefix("dom0-home") && $0 != "target" }
        #expect(outside.isEmpty, "\(outside)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escape-absolute-qb"))
        #expect(!dir.listing().contains { $0.contains("escape") && !$0.hasPrefix("target/inside") })
    }

    @Test func flippedAndRenamedChunksFailBeforeAnyOutput() throws {
        for (fixture, message) in [("v4-flipped-byte.qubes", "does not authenticate"), ("v4-renamed-chunk.qubes", "does not open")] {
            let file = fixture == "v4-flipped-byte.qubes" ? "vm9/private.img" : "vm3/private.img"
            let (r, dir) = try v4Pipeline(fixture, file: file)
            #expect(r.status != 0, "\(fixture)")
            #expect(r.stderr.contains(message), "\(fixture): \(r.stderr)")
            // No complete-looking image: qb-untar writes under a temporary name until the member is whole.
            #expect(!FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("target/inside/\(file)").path), "\(fixture)")
        }
    }

    @Test func v3FlippedByteFailsItsHMAC() throws {
        let dir = try ScratchDirectory()
        _ = try run("qb-untar", ["-i", "-x", "-C", dir.url.path, "-f", Repo.fixture("v3-flipped-byte.qubes").path])
        let r = try shell("""
            for n in vm9/private.img.000 vm9/private.img.001 vm9/private.img.002; do
                qb-hmac --verify "$n.hmac" --passphrase env:P "$n" || exit 1
            done
            """, environment: ["P": "qubes"], directory: dir.url)
        #expect(r.status == 1)
        #expect(r.stdoutText.hasSuffix("vm9/private.img.001: FAILED\n"))
    }
}

/// v2 (R2): every chunk is one tar volume, gzipped and encrypted on its own.
/// Verify each, then hand the decrypted volumes to `qb-untar -M` through
/// process substitution: no temporary files.
@Suite struct V2RestoreTests {
    @Test func v2FixtureRestoresThroughTheVolumePipeline() throws {
        let manifest = try Manifest.json()["fixtures"] as! [[String: Any]]
        let fixture = manifest.first { $0["file"] as? String == "v2-aes-gzip.qubes" }!
        let chunks = fixture["chunks"] as! [String: Int]
        let dir = try ScratchDirectory()
        _ = try run("qb-untar", ["-i", "-x", "-C", dir.url.path, "-f", Repo.fixture("v2-aes-gzip.qubes").path])
        for (name, count) in chunks where name != "qubes.xml" {
            let files = (0..<count).map { "\(name).\(String(format: "%03d", $0))" }
            let volumes = files.map { "-f <(qb-decrypt --passphrase env:P < '\($0)' | qb-decompress -f gzip)" }.joined(separator: " ")
            let r = try shell("""
                for n in \(files.map { "'\($0)'" }.joined(separator: " ")); do qb-hmac --verify "$n.hmac" --passphrase env:P "$n" >/dev/null || exit 1; done
                mkdir -p out && qb-untar -x -M -C out \(volumes)
                """, environment: ["P": fixture["passphrase"] as! String], directory: dir.url)
            #expect(r.status == 0, "\(name): \(r.stderr)")
        }
        let problems = try Manifest.mismatches(fixture, under: dir.url.appendingPathComponent("out")) { _, _, path in path }
        #expect(problems.isEmpty, "\(problems)")
        // A volume missing from the middle is refused, not silently skipped.
        let broken = try shell("""
            mkdir -p out2 && qb-untar -x -M -C out2 -f <(qb-decrypt --passphrase env:P < vm3/private.img.000 | qb-decompress -f gzip) \
                -f <(qb-decrypt --passphrase env:P < vm3/private.img.002 | qb-decompress -f gzip)
            """, environment: ["P": fixture["passphrase"] as! String], directory: dir.url)
        #expect(broken.status == 3, "\(broken.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("out2/vm3/private.img").path))
    }
}
