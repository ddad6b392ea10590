// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for the parsers of the QubesBackup library. A package of
// its own, so `swift build` and `swift test` of the root package never see
// fuzzing flags. Build from this directory (or run `make fuzz` in the root
// directory; see README.md "Fuzzing"):
//
//     swift build -c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address
//
// Both halves are needed. SwiftPM's `--sanitize=fuzzer` links libFuzzer's
// main (`-Xswiftc -sanitize=fuzzer` alone links a binary whose Swift main
// wins and which never fuzzes). But SwiftPM passes `-sanitize=fuzzer
// -sanitize=address` to swiftc, and the Swift 6.3 driver hands only the last
// of repeated `-sanitize=` options to the compiler: the code gets ASan but no
// coverage instrumentation, and libFuzzer runs blind ("no interesting inputs
// were found", no `cov:` in its output). The trailing combined option is the
// one the compiler sees, so the code gets both.

/// The root package is a path dependency; its identity is the name of its
/// directory (`qb`, `main`, a worktree name), so it is computed here.
let rootDirectory = Context.packageDirectory.split(separator: "/").dropLast().last.map(String.init) ?? "qb"

/// One executable per parser; each main.swift only defines LLVMFuzzerTestOneInput.
let fuzzTargets = ["FuzzHeader", "FuzzDigestLine", "FuzzTar", "FuzzTarExtract", "FuzzOpenSSLEnc", "FuzzScryptFile",
                   "FuzzQubesXML", "FuzzDecompress", "FuzzChunkNames", "FuzzRestore", "FuzzFilesystem"]

let package = Package(
    name: "qb-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        // The entry points, shared with the root package's FuzzRegressionTests
        // (Tests/QubesBackupTests/FuzzEntries.swift is a link to this file).
        .target(
            name: "FuzzEntries",
            dependencies: [.product(name: "QubesBackup", package: rootDirectory)]
        ),
    ] + fuzzTargets.map { name in
        .executableTarget(name: name, dependencies: ["FuzzEntries"])
    }
)
