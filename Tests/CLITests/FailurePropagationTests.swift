import Foundation
import Testing
import QBTestSupport

/// A stage of a running restore killed mid-stream: the pipeline fails under
/// pipefail, the member is named, and no complete-looking file remains.
/// The backup is fed in two parts: the feeder writes the first, then blocks
/// on a FIFO until the stage has been killed and is gone, so bytes have
/// flowed through every stage and the rest arrives only after the kill.
/// The moment of the kill is an event, not a time: in a small-tool pipeline,
/// a tap in front of the extractor has passed on its first 512 bytes (it
/// says so through a FIFO); for qb-restore, its temporary image file exists
/// (it cannot finish that image before the rest is fed). Load or a
/// sanitizer can only slow these steps down, not reorder them.
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

    /// When the victim is killed.
    enum Moment {
        /// Once the pipeline's `tap` (placed before the extractor) has
        /// passed on 512 bytes.
        case streamed
        /// Once a `.qb-tmp-*` file exists under this directory.
        case temporaryFile(String)
    }

    /// Runs `pipeline` (which reads the backup from `feed`), and kills the
    /// process whose pid is in `victim.pid` with `signal` at `moment`, then
    /// feeds the rest once that process is gone. `killed` says `mid-stream`
    /// when the kill happened so, `never` when the moment did not come.
    func runAndKill(_ pipeline: String, fixture: String, pause: Int, moment: Moment, signal: String,
                    environment: [String: String]) throws -> (RunResult, ScratchDirectory) {
        let dir = try ScratchDirectory()
        let wait: String
        switch moment {
        case .streamed:
            // Read-write opens never block on a FIFO: neither side can hang
            // on the other's absence; the 120 s only ends a broken run.
            wait = """
                  exec 4<>flowed
                  read -t 120 -r what <&4 || what=never
                """
        case .temporaryFile(let watch):
            // A state polled for, not a time waited: the image cannot be
            // finished before the rest of the backup is fed. The cap only
            // ends a broken run.
            wait = """
                  what=never
                  for i in $(seq 1 12000); do
                    if [ -s victim.pid ] && find \(watch) -name '.qb-tmp-*' 2>/dev/null | grep -q .; then what=flowed; break; fi
                    if [ -s victim.pid ] && ! kill -0 "$(cat victim.pid)" 2>/dev/null; then break; fi
                    sleep 0.01
                  done
                """
        }
        let script = """
            mkfifo flowed resume
            feed() {
              exec 3<>resume
              head -c \(pause) '\(Repo.fixture(fixture).path)'
              read -r _ <&3
              tail -c +\(pause + 1) '\(Repo.fixture(fixture).path)'
            }
            tap() {
              dd bs=512 count=1 iflag=fullblock 2> tap.log
              if grep -q '^1+0 records in' tap.log; then echo flowed 1<>flowed; else echo never 1<>flowed; fi
              exec cat
            }
            killer() {
            \(wait)
              if [ "$what" = flowed ]; then
                pid=$(cat victim.pid)
                kill -\(signal) "$pid"
                # Gone (and reaped by the shell running the pipeline) before the rest is fed.
                while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
                echo mid-stream > killed
              else
                echo never > killed
              fi
              echo go 1<>resume
            }
            mkdir -p out target
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
              | tap | qb-untar -x --within vm9/private.img --strip-components 1 -C out
            """
        let (r, dir) = try runAndKill(pipeline, fixture: file, pause: pause, moment: .streamed, signal: "KILL", environment: ["P": "qubes"])
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
              | qb-decompress -f gzip | tap | qb-untar -x --within vm9/private.img --strip-components 1 -C out
            """
        let (r, dir) = try runAndKill(pipeline, fixture: file, pause: pause, moment: .streamed, signal: "KILL",
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
        let (r, dir) = try runAndKill(pipeline, fixture: file, pause: pause, moment: .temporaryFile("target"), signal: signal, environment: ["P": "qubes"])
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
