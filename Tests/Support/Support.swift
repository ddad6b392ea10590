import Foundation

/// Where the repository's test data lives, found from this file's own path so
/// the tests run from any checkout.
public enum Repo {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let fixtures: URL = root.appendingPathComponent("Tests/Fixtures")

    public static func fixture(_ name: String) -> URL { fixtures.appendingPathComponent(name) }

    /// The directory holding the executables under test: `QB_TEST_BINARIES`
    /// when it is set, otherwise the test bundle's own.
    ///
    /// `QB_TEST_BINARIES=DIR` runs the tool-level tests against other builds
    /// of the same tools: `make check-release` points it at the release
    /// build (`swift build -c release`), which users run, while the test
    /// bundle itself is the debug one `make check` built. DIR must hold
    /// every `qb-*` tool and `qb`; a relative DIR is taken from the current
    /// directory. A DIR without them stops the run instead of testing
    /// something else.
    public static let binaries: URL = {
        if let chosen = ProcessInfo.processInfo.environment["QB_TEST_BINARIES"], !chosen.isEmpty {
            let dir = URL(fileURLWithPath: chosen, isDirectory: true).standardizedFileURL
            // fatalError, not precondition: -c release drops a precondition's message.
            for tool in ["qb", "qb-untar", "qb-hmac", "qb-decrypt", "qb-decompress", "qb-header", "qb-restore", "qb-fs"]
            where !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent(tool).path) {
                fatalError("QB_TEST_BINARIES=\(chosen): no executable \(tool) there")
            }
            return dir
        }
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

/// `shell` with `set -e` as well as pipefail: a script fails at its first
/// failing command, not only when its last one fails.
public func strictShell(_ script: String, environment: [String: String] = [:], directory: URL? = nil) throws -> RunResult {
    try shell("set -e\n" + script, environment: environment, directory: directory)
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

/// Whether this test process runs under AddressSanitizer, and so the tools
/// built with it (`swift test --sanitize=address`): ASan reserves terabytes
/// of address space as it starts, so under an address-space limit
/// (`prlimit --as`) such a tool dies before its first line.
public let underAddressSanitizer: Bool = dlsym(nil, "__asan_init") != nil

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
public struct Manifest: Decodable, Sendable {
    public struct Fixture: Decodable, Sendable {
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

    /// The manifest as loaded once for parameterized suites, whose argument
    /// lists cannot throw: a failure to load is kept here, and
    /// `ManifestTests.manifestLoads` fails on it, so it cannot pass as a
    /// suite of zero cases.
    public static let loaded: Result<Manifest, any Error> = Result { try load() }

    /// The files of the fixtures that `include` keeps, for `@Test(arguments:)`;
    /// empty only when the manifest does not load, which fails
    /// `ManifestTests.manifestLoads` and each suite's own count check.
    public static func files(where include: (Fixture) -> Bool) -> [String] {
        switch loaded {
        case .success(let manifest): return manifest.fixtures.filter(include).map(\.file)
        case .failure: return []
        }
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

extension Manifest {
    /// The manifest's description of the filesystem in `volume` of a VM of
    /// `fixture` (`filesystem`, or one of `other_filesystems`), if any.
    public static func filesystem(_ fixture: [String: Any], vm: String, volume: String) -> [String: Any]? {
        guard let group = (fixture["expected"] as? [String: Any])?[vm] as? [String: Any] else { return nil }
        let all = [group["filesystem"]].compactMap { $0 as? [String: Any] } + (group["other_filesystems"] as? [[String: Any]] ?? [])
        return all.first { $0["volume"] as? String == volume }
    }

    /// Compares an extracted tree with a manifest filesystem listing (made
    /// from the tree mke2fs was given): every path present with its type,
    /// size, content (sha256sum), permission bits, symlink target and
    /// mtime; hard-link groups share an inode; sparse files keep holes.
    /// Paths in `skipping` must be absent. Returns what differs.
    public static func filesystemMismatches(_ description: [String: Any], under root: URL, skipping: Set<String> = []) throws -> [String] {
        var problems: [String] = []
        let files = description["files"] as! [String: [String: Any]]
        for (path, facts) in files.sorted(by: { $0.key < $1.key }) {
            let url = root.appendingPathComponent(path)
            var info = stat()
            let present = lstat(url.path, &info) == 0
            if skipping.contains(path) {
                if present { problems.append("\(path): extracted, but it is damaged in the image") }
                continue
            }
            guard present else { problems.append("\(path): missing"); continue }
            let type = facts["type"] as! String
            let kind = info.st_mode & S_IFMT
            switch type {
            case "dir": if kind != S_IFDIR { problems.append("\(path): not a directory") }
            case "symlink":
                let target = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)
                if target != facts["target"] as? String { problems.append("\(path): symlink to \(target ?? "nothing")") }
            default:
                guard kind == S_IFREG else { problems.append("\(path): not a regular file"); continue }
                if Int(info.st_size) != facts["size"] as? Int { problems.append("\(path): size \(info.st_size)") }
                if try sha256(of: url) != facts["sha256"] as? String { problems.append("\(path): content") }
                if facts["sparse"] as? Bool == true && Int(info.st_blocks) * 512 >= Int(info.st_size) { problems.append("\(path): holes lost") }
                if let group = facts["hardlinks"] as? [String] {
                    for other in group where other != path {
                        var otherInfo = stat()
                        if lstat(root.appendingPathComponent(other).path, &otherInfo) != 0 || otherInfo.st_ino != info.st_ino {
                            problems.append("\(path): not hard-linked with \(other)")
                        }
                    }
                }
            }
            if let mode = facts["mode"] as? String, type != "symlink", Int(info.st_mode & 0o777) != Int(mode, radix: 8)! & 0o777 {
                problems.append("\(path): mode \(String(info.st_mode & 0o777, radix: 8)), expected \(mode)")
            }
            if type != "dir", let mtime = facts["mtime"] as? Int, info.st_mtim.tv_sec != mtime {
                problems.append("\(path): mtime \(info.st_mtim.tv_sec), expected \(mtime)")
            }
        }
        // Nothing but what the listing has (and mke2fs's lost+found).
        let listed = Set(files.keys)
        let enumerator = FileManager.default.enumerator(atPath: root.path)
        while let relative = enumerator?.nextObject() as? String {
            if relative == "lost+found" || relative.hasPrefix("lost+found/") { continue }
            if !listed.contains(relative) { problems.append("\(relative): extracted, but not in the image's source") }
        }
        return problems
    }
}
