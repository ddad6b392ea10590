import Foundation

/// Where the repository's test data lives, found from this file's own path so
/// the tests run from any checkout.
public enum Repo {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let fixtures: URL = root.appendingPathComponent("Tests/Fixtures")

    public static func fixture(_ name: String) -> URL { fixtures.appendingPathComponent(name) }

    /// The directory holding the built executables: the test bundle's own.
    public static let binaries: URL = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // On Linux the test runner is `<bin>/qbPackageTests.xctest`; on macOS a bundle.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("qb-hmac").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }()
}

/// What a finished process left behind.
public struct RunResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: String
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program with the given arguments, environment additions and stdin,
/// and collects everything. Standard input is a file or /dev/null, never the
/// test runner's own.
@discardableResult
public func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, stdinFile: URL? = nil,
                environment: [String: String] = [:], directory: URL? = nil) throws -> RunResult {
    let process = Process()
    if executable.hasPrefix("/") {
        process.executableURL = URL(fileURLWithPath: executable)
    } else if executable.hasPrefix("qb-") {
        process.executableURL = Repo.binaries.appendingPathComponent(executable)
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable]
    }
    process.arguments = (process.arguments ?? []) + arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    if let directory { process.currentDirectoryURL = directory }
    let scratch = try ScratchDirectory()
    let outURL = scratch.url.appendingPathComponent("stdout"), errURL = scratch.url.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    process.standardOutput = out
    process.standardError = err
    if let stdinFile {
        process.standardInput = try FileHandle(forReadingFrom: stdinFile)
    } else if let stdin {
        let inURL = scratch.url.appendingPathComponent("stdin")
        try stdin.write(to: inURL)
        process.standardInput = try FileHandle(forReadingFrom: inURL)
    } else {
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    }
    try process.run()
    process.waitUntilExit()
    try out.close(); try err.close()
    return RunResult(status: process.terminationStatus,
                     stdout: try Data(contentsOf: outURL),
                     stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// Runs a shell script with `bash -o pipefail -e` so pipelines fail as users' would.
@discardableResult
public func shell(_ script: String, environment: [String: String] = [:], directory: URL? = nil) throws -> RunResult {
    var env = environment
    env["PATH"] = Repo.binaries.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
    return try run("/bin/bash", ["-o", "pipefail", "-c", script], environment: env, directory: directory)
}

/// A fresh directory removed when the value goes away.
public final class ScratchDirectory: @unchecked Sendable {
    public let url: URL

    public init() throws {
        let base = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qb-test-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        url = base
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Every path below the directory, relative, sorted.
    public func listing() -> [String] {
        let e = FileManager.default.enumerator(atPath: url.path)
        var all: [String] = []
        while let p = e?.nextObject() as? String { all.append(p) }
        return all.sorted()
    }
}

/// Whether a program is installed (interop tests need real tar, openssl, scrypt…).
public func haveProgram(_ name: String) -> Bool {
    (try? run("/bin/sh", ["-c", "command -v \(name)"]).status) == 0
}

/// Lower-case hex of SHA-256, computed by the system's sha256sum so the tests
/// do not check our code against itself.
public func sha256(of url: URL) throws -> String {
    let r = try run("sha256sum", [url.path])
    return String(r.stdoutText.prefix(64))
}

public func sha256(of data: Data) throws -> String {
    let r = try run("sha256sum", [], stdin: data)
    return String(r.stdoutText.prefix(64))
}

/// The fixtures' manifest.
public struct Manifest: Decodable {
    public struct Fixture: Decodable {
        public var file: String
        public var valid: Bool
        public var version: Int?
        public var passphrase: String?
        public var backup_id: String?
        public var compression: String?
        public var encrypted: Bool?
        public var chunk_size: Int?
        public var layer: String?
        public var reason: String?
        public var chunks: [String: Int]?
    }
    public var fixtures: [Fixture]

    public static func load() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: Repo.fixture("manifest.json")))
    }

    /// The full JSON, for tests that need the nested `expected` trees.
    public static func json() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: Repo.fixture("manifest.json"))) as! [String: Any]
    }
}

extension Manifest {
    /// The fixture's entry of the full JSON.
    public static func entry(_ file: String) throws -> [String: Any] {
        let all = try json()["fixtures"] as! [[String: Any]]
        return all.first { $0["file"] as? String == file }!
    }

    /// Compares a restored tree with the fixture's `expected` files (content by
    /// sha256sum, size, holes by allocated blocks, symlink targets) and
    /// returns what differs. `place(vm, subdir, path)` says where the file
    /// with manifest path `path` should be, relative to `root`.
    public static func mismatches(_ fixture: [String: Any], under root: URL,
                                  place: (_ vm: String, _ subdir: String, _ path: String) -> String?) throws -> [String] {
        var problems: [String] = []
        for (vm, value) in fixture["expected"] as! [String: Any] where vm != "qubes.xml" {
            let group = value as! [String: Any]
            let subdir = group["subdir"] as? String ?? ""
            for (path, facts) in group["files"] as! [String: [String: Any]] {
                guard let relative = place(vm, subdir, path) else { continue }
                let url = root.appendingPathComponent(relative)
                if let target = facts["symlink"] as? String {
                    let actual = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)
                    if actual != target { problems.append("\(relative): symlink to \(actual ?? "nothing"), expected \(target)") }
                    continue
                }
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else {
                    problems.append("\(relative): missing")
                    continue
                }
                if (attributes[.size] as? NSNumber)?.intValue != facts["size"] as? Int { problems.append("\(relative): size") }
                if try sha256(of: url) != facts["sha256"] as? String { problems.append("\(relative): content") }
                if facts["sparse"] as? Bool == true {
                    let blocks = try run("stat", ["-c", "%b", url.path]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
                    if (Int(blocks) ?? .max) * 512 >= (facts["size"] as! Int) { problems.append("\(relative): not sparse") }
                }
            }
        }
        return problems
    }

    /// Where qb-restore puts a manifest path: `vm3/private.img` of VM work
    /// in `work/private.img`, dom0's home in `dom0-home/USER/…`.
    public static func restoredPlace(_ vm: String, _ subdir: String, _ path: String) -> String {
        if subdir.hasPrefix("dom0-home") { return path }
        return vm + "/" + path.dropFirst(subdir.count)
    }
}
