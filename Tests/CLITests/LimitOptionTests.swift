import Foundation
import Testing
import QBTestSupport

/// The limits a user can raise, through the tools' options: at the value a
/// backup needs it is accepted, one below it is refused with status 3 and a
/// line naming the limit, leaving no complete-looking file.
@Suite struct LimitOptionTests {
    /// The largest chunk (not .hmac) of a fixture, read from its tar headers.
    static func largestChunk(_ file: String) throws -> Int {
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        return TruncationCLITests.members(bytes)
            .filter { !$0.name.hasSuffix(".hmac") && $0.name.hasPrefix("vm") }
            .map { member in
                let field = bytes[(member.header + 124)..<(member.header + 136)].filter { (0x30...0x37).contains($0) }
                return Int(String(decoding: field, as: UTF8.self), radix: 8) ?? 0
            }.max() ?? 0
    }

    func restore(_ file: String, _ options: [String]) throws -> (RunResult, ScratchDirectory) {
        let dir = try ScratchDirectory()
        try FileManager.default.createDirectory(at: dir.file("target"), withIntermediateDirectories: true)
        let pass = try Manifest.entry(file)["passphrase"] as! String
        let r = try run("qb-restore", options + ["--passphrase", "env:P", "-C", "target", Repo.fixture(file).path],
                        environment: ["P": pass], directory: dir.url)
        return (r, dir)
    }

    func expectRefused(_ r: RunResult, _ dir: ScratchDirectory, _ words: String, tool: String = "qb-restore") {
        #expect(r.status == 3, "\(r.status): \(r.stderr) \(r.stdoutText)")
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains(": warning: ") }
        #expect(lines.count == 1 && lines[0].hasPrefix(tool + ": ") && lines[0].contains(words), "\(r.stderr)")
        #expect(!dir.listing().contains { $0.contains(".qb-tmp") || $0.hasSuffix("private.img") || $0.hasSuffix("root.img") }, "\(dir.listing())")
    }

    @Test(arguments: ["v3-aes-gzip.qubes", "v4-gzip.qubes"])
    func restoreMaxSize(file: String) throws {
        let largest = try Self.largestChunk(file)
        #expect(largest > 100_000)
        let (ok, _) = try restore(file, ["--max-size", String(largest)])
        #expect(ok.status == 0, "\(ok.stderr)")
        let (over, dir) = try restore(file, ["--max-size", String(largest - 1)])
        expectRefused(over, dir, "chunk is larger than \(largest - 1) bytes")
    }

    @Test func restoreMaxMemory() throws {
        // The fixtures' scrypt parameters: logN 10, r 8, p 1 → 128 · 8 · (1024 + 1 + 2) bytes.
        let (ok, _) = try restore("v4-gzip.qubes", ["--max-memory", "1051648"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let (over, dir) = try restore("v4-gzip.qubes", ["--max-memory", "1051647"])
        expectRefused(over, dir, "need 1.0 MiB (1051648 bytes) of memory, over the limit of 1051647 bytes (raise --max-memory to at least 1051648")
        #expect(dir.listing() == ["target"])
    }

    @Test func decryptChunksMaxSize() throws {
        let fixture = try Manifest.entry("v4-gzip.qubes")
        let largest = try Self.largestChunk("v4-gzip.qubes")
        for (limit, status) in [(largest, Int32(0)), (largest - 1, Int32(3))] {
            let dir = try ScratchDirectory()
            let r = try shell("""
                qb-untar -i --tar 'vm9/private.img.[0-9]*' < \(Repo.fixture("v4-gzip.qubes").path) \
                  | qb-decrypt --chunks --max-size \(limit) --backup-id "$ID" --passphrase env:P > out
                """, environment: ["P": fixture["passphrase"] as! String, "ID": fixture["backup_id"] as! String], directory: dir.url)
            #expect(r.status == status, "\(limit): \(r.stderr)")
            if status != 0 {
                #expect(r.stderr.contains("qb-decrypt: vm9/private.img.000.enc: chunk is larger than \(limit) bytes"), "\(r.stderr)")
                // Nothing is released before a chunk is authenticated, and the first one was refused.
                #expect(try Data(contentsOf: dir.file("out")).isEmpty)
            }
        }
    }

    @Test func hmacCheckMaxSizeAtTheLimit() throws {
        let largest = try Self.largestChunk("v3-aes-gzip.qubes")
        for (limit, status) in [(largest, Int32(0)), (largest - 1, Int32(3))] {
            let dir = try ScratchDirectory()
            let r = try shell("""
                qb-untar -i --tar 'vm9/private.img.[0-9]*' < \(Repo.fixture("v3-aes-gzip.qubes").path) \
                  | qb-hmac --check --max-size \(limit) --passphrase env:P > out
                """, environment: ["P": "qubes"], directory: dir.url)
            #expect(r.status == status, "\(limit): \(r.stderr)")
            if status != 0 { #expect(r.stderr.contains("chunk is larger than \(limit) bytes"), "\(r.stderr)") }
        }
    }

    /// A GNU sparse archive with a known number of regions (counted by
    /// Python's tarfile, not by qb).
    static func sparseArchive(in dir: ScratchDirectory) throws -> Int {
        let made = try shell("""
            python3 -c '
            import os
            with open("img", "wb") as f:
                for k in range(6):
                    f.seek(k * 65536); f.write(b"data")
            '
            tar --sparse --format=posix -cf sparse.tar img
            python3 -c 'import tarfile; print(len(tarfile.open("sparse.tar").getmember("img").sparse))'
            """, directory: dir.url)
        #expect(made.status == 0, "\(made.stderr)")
        return Int(made.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    @Test func untarMaxSparseEntries() throws {
        guard haveProgram("tar"), haveProgram("python3") else { return }
        let dir = try ScratchDirectory()
        let regions = try Self.sparseArchive(in: dir)
        #expect(regions >= 6)
        let ok = try shell("mkdir a && qb-untar -x --max-sparse-entries \(regions) -f sparse.tar -C a && cmp img a/img", directory: dir.url)
        #expect(ok.status == 0, "\(ok.stderr)")
        let over = try shell("mkdir b && qb-untar -x --max-sparse-entries \(regions - 1) -f sparse.tar -C b", directory: dir.url)
        #expect(over.status == 3)
        #expect(over.stderr == "qb-untar: img: sparse map has more than \(regions - 1) entries (corrupt or hostile archive)\n", "\(over.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("b").path).isEmpty)
    }

    @Test func restoreMaxSparseEntries() throws {
        // The fixtures' images have a few regions each: one entry is too few.
        let (over, dir) = try restore("v4-gzip.qubes", ["--max-sparse-entries", "1"])
        expectRefused(over, dir, "sparse map has more than 1 entries")
        let (ok, _) = try restore("v4-gzip.qubes", ["--max-sparse-entries", "1000"])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    /// --jobs and --max-sparse-entries below 1 are usage errors in every
    /// tool that takes them, before anything is read.
    @Test(arguments: [
        ("qb-hmac", ["--check", "-j", "0", "--passphrase", "pass:x"], "--jobs must be at least 1"),
        ("qb-decrypt", ["--chunks", "--backup-id", "x", "-j", "0", "--passphrase", "pass:x"], "--jobs must be at least 1"),
        ("qb-restore", ["-j", "0", "--passphrase", "pass:x", "-"], "--jobs must be at least 1"),
        ("qb-untar", ["-t", "--max-sparse-entries", "0"], "--max-sparse-entries must be at least 1"),
        ("qb-restore", ["--max-sparse-entries", "0", "--passphrase", "pass:x", "-"], "--max-sparse-entries must be at least 1"),
    ])
    func limitsMustBeAtLeastOne(tool: String, arguments: [String], message: String) throws {
        let r = try run(tool, arguments, stdin: Data("not read".utf8))
        #expect(r.status == 2)
        #expect(r.stderr.hasPrefix("\(tool): \(message)\n"), "\(tool): \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}
