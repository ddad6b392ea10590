import Foundation
import Testing
import QBTestSupport

/// A stage of a running restore killed mid-stream: the pipeline fails under
/// pipefail, the member is named, and no complete-looking file remains.
/// The backup is fed in two parts with a pause between, and the stage is
/// killed during the pause, once the extractor has started the image (its
/// temporary file exists), so bytes have flowed through every stage; the
/// rest is fed after the kill.
/// (A byte flipped in chunk k of n: RestoreToolTests.)
@Suite(.serialized) struct FailurePropagationTests {
    /// Where the feeder pauses: after the second chunk of vm9/private.img
    /// (of three). With `-j 1` a verified chunk is released when the next
    /// one has arrived, so the first goes all the way down while the rest
    /// waits.
    static func pausePoint(_ file: String, after member: String) throws -> Int {
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let members = TruncationCLITests.members(bytes)
        let i = members.firstIndex { $0.name == member }!
        return members[i].dataEnd
    }

    /// Runs `pipeline` (which reads the backup from `feed`), and kills the
    /// process whose pid is in `victim.pid` with `signal` once a `.qb-tmp-*`
    /// file appears under `watch`. Returns the result and whether the kill
    /// happened mid-stream.
    func runAndKill(_ pipeline: String, fixture: String, pause: Int, watch: String, signal: String,
                    environment: [String: String]) throws -> (RunResult, ScratchDirectory) {
        let dir = try ScratchDirectory()
        let script = """
            feed() {
              head -c \(pause) '\(Repo.fixture(fixture).path)'
              until [ -s killed ]; do sleep 0.05; done; sleep 0.5
              tail -c +\(pause + 1) '\(Repo.fixture(fixture).path)'
            }
            killer() {
              for i in $(seq 1 200); do
                if [ -s victim.pid ] && find \(watch) -name '.qb-tmp-*' 2>/dev/null | grep -q .; then
                  echo mid-stream > killed; kill -\(signal) "$(cat victim.pid)"; return
                fi
                sleep 0.05
              done
              echo never > killed
            }
            mkdir -p \(watch)
            killer &
            \(pipeline)
            status=$?
            wait
            exit $status
            """
        let r = try shell(script, environment: environment, directory: dir.url)
        return (r, dir)
    }

    func expectNothingCompleteLooking(_ dir: ScratchDirectory, under root: String, image: String) {
        let listing = dir.listing()
        #expect(!listing.contains { $0.contains(".qb-tmp") }, "temporary files left: \(listing)")
        #expect(!FileManager.default.fileExists(atPath: dir.file(root + "/" + image).path), "\(image) looks restored: \(listing)")
    }

    @Test(arguments: ["qb-hmac", "qb-decrypt", "qb-decompress"])
    func v3PipelineStageKilled(stage: String) throws {
        let file = "v3-aes-gzip.qubes"
        let pause = try Self.pausePoint(file, after: "vm9/private.img.001.hmac")
        let stages = [
            "qb-hmac": "qb-hmac --check -j 1 --passphrase env:P",
            "qb-decrypt": "qb-decrypt --passphrase env:P",
            "qb-decompress": "qb-decompress -f gzip",
        ]
        func stageCommand(_ name: String) -> String {
            name == stage ? "sh -c 'echo $$ > victim.pid; exec \(stages[name]!)'" : stages[name]!
        }
        let pipeline = """
            feed | qb-untar -i --tar 'vm9/private.img.[0-9]*' \
              | \(stageCommand("qb-hmac")) | \(stageCommand("qb-decrypt")) | \(stageCommand("qb-decompress")) \
              | qb-untar -x --within vm9/private.img --strip-components 1 -C out
            """
        let (r, dir) = try runAndKill(pipeline, fixture: file, pause: pause, watch: "out", signal: "KILL", environment: ["P": "qubes"])
        #expect((try? String(contentsOf: dir.file("killed"), encoding: .utf8)) == "mid-stream\n", "the kill did not land mid-stream: \(r.stderr)")
        #expect(r.status != 0, "\(stage) killed, yet the pipeline succeeded")
        // The extractor reports the member it was writing when its input ended.
        #expect(r.stderr.contains("qb-untar: vm9/private.img: "), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").allSatisfy { $0.hasPrefix("qb-") || $0.contains("Killed") }, "\(r.stderr)")
        expectNothingCompleteLooking(dir, under: "out", image: "private.img")
        #expect(dir.listing().filter { $0.hasPrefix("out/") }.isEmpty, "\(dir.listing())")
    }

    @Test func v4DecryptKilled() throws {
        let file = "v4-gzip.qubes"
        let fixture = try Manifest.entry(file)
        let pause = try Self.pausePoint(file, after: "vm9/private.img.001.enc")
        let pipeline = """
            feed | qb-untar -i --tar 'vm9/private.img.[0-9]*' \
              | sh -c 'echo $$ > victim.pid; exec qb-decrypt --chunks -j 1 --backup-id "$ID" --passphrase env:P' \
              | qb-decompress -f gzip | qb-untar -x --within vm9/private.img --strip-components 1 -C out
            """
        let (r, dir) = try runAndKill(pipeline, fixture: file, pause: pause, watch: "out", signal: "KILL",
                                      environment: ["P": fixture["passphrase"] as! String, "ID": fixture["backup_id"] as! String])
        #expect((try? String(contentsOf: dir.file("killed"), encoding: .utf8)) == "mid-stream\n", "\(r.stderr)")
        #expect(r.status != 0)
        #expect(r.stderr.contains("qb-untar: vm9/private.img: "), "\(r.stderr)")
        expectNothingCompleteLooking(dir, under: "out", image: "private.img")
    }

    /// qb-restore stopped by SIGTERM, SIGINT or SIGHUP while it writes an
    /// image: it dies of the signal, leaves no image under its final name
    /// and removes the temporary file it was writing.
    @Test(arguments: ["TERM", "INT", "HUP"])
    func qbRestoreInterrupted(signal: String) throws {
        let file = "v3-aes-gzip.qubes"
        let pause = try Self.pausePoint(file, after: "vm9/private.img.001.hmac")
        let pipeline = """
            feed | { echo $BASHPID > victim.pid; exec qb-restore -j 1 --dom0-home --passphrase env:P -C target -; }
            """
        let (r, dir) = try runAndKill(pipeline, fixture: file, pause: pause, watch: "target", signal: signal, environment: ["P": "qubes"])
        #expect((try? String(contentsOf: dir.file("killed"), encoding: .utf8)) == "mid-stream\n", "\(r.stderr)")
        let number = ["HUP": 1, "INT": 2, "TERM": 15][signal]!
        #expect(r.status == Int32(128 + number), "\(r.status): \(r.stderr)")
        expectNothingCompleteLooking(dir, under: "target", image: "standalone/private.img")
        // What finished before the signal is whole.
        let problems = try Manifest.mismatches(try Manifest.entry(file), under: dir.file("target"), place: Manifest.restoredPlace)
        #expect(problems.allSatisfy { $0.hasSuffix(": missing") || $0.hasSuffix(": symlink to nothing, expected Documents/notes.txt") },
                "\(problems)")
        #expect(problems.contains("standalone/private.img: missing"))
    }
}
