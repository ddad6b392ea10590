import Foundation
import Testing
import QBTestSupport

/// Every valid v3 and v4 fixture restored with the small tools only, one
/// documented pipeline per backed-up file, must match the manifest byte for byte.
@Suite struct RestorePipelineTests {
    static func fixtures() -> [[String: Any]] {
        let all = (try? Manifest.json()["fixtures"] as? [[String: Any]]) ?? []
        return all.filter { $0["valid"] as? Bool == true && ($0["version"] as? Int ?? 0) >= 3 }
    }

    @Test(arguments: fixtures().map { $0["file"] as! String })
    func restoresLikeTheManifest(file: String) throws {
        let fixture = Self.fixtures().first { $0["file"] as? String == file }!
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
        let expected = fixture["expected"] as! [String: Any]
        for (vm, value) in expected where vm != "qubes.xml" {
            let files = (value as! [String: Any])["files"] as! [String: [String: Any]]
            for (path, facts) in files {
                let url = dir.url.appendingPathComponent("out").appendingPathComponent(path)
                if let target = facts["symlink"] as? String {
                    #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)) == target, "\(file) \(path)")
                    continue
                }
                let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
                #expect((attributes[.size] as? NSNumber)?.intValue == facts["size"] as? Int, "\(file) \(path)")
                #expect(try sha256(of: url) == facts["sha256"] as? String, "\(file) \(path)")
                if facts["sparse"] as? Bool == true {
                    let blocks = try run("stat", ["-c", "%b", url.path]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
                    #expect((Int(blocks) ?? .max) * 512 < (facts["size"] as! Int), "\(file) \(path) is not sparse")
                }
            }
        }
        // Nothing restored outside the output directory.
        #expect(!FileManager.default.fileExists(atPath: dir.url.appendingPathComponent("vm3/private.img").path))
    }
}
