// swift-tools-version:6.0
// qb — restore Qubes OS backups anywhere. Copyright the qb authors; licensed
// under the Apache License, Version 2.0 (LICENSE).
import PackageDescription

// C libraries come from the distribution (Debian's -dev packages); the Makefile
// installs them. Nothing here downloads or builds a C library.
/// What the tools' commands (QBTools) use: the library, the shared CLI layer, the parser.
let toolDependencies: [Target.Dependency] = [
    "QubesBackup", "QubesBackupCLI",
    .product(name: "ArgumentParser", package: "swift-argument-parser"),
]

let package = Package(
    name: "qb",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "QubesBackup", targets: ["QubesBackup"]),
        .executable(name: "qb-hmac", targets: ["qb-hmac"]),
        .executable(name: "qb-header", targets: ["qb-header"]),
        .executable(name: "qb-decompress", targets: ["qb-decompress"]),
        .executable(name: "qb-decrypt", targets: ["qb-decrypt"]),
        .executable(name: "qb-untar", targets: ["qb-untar"]),
        .executable(name: "qb-restore", targets: ["qb-restore"]),
        .executable(name: "qb-fs", targets: ["qb-fs"]),
        // Every tool in one program, for `make dist` and `make deb`.
        .executable(name: "qb", targets: ["qb"]),
    ],
    dependencies: [
        // 1.7.1: `_errorPrefix`, through which ToolMain names the tool in parser errors.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.7.1"),
    ],
    targets: [
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CBzip2", providers: [.apt(["libbz2-dev"])]),
        .systemLibrary(name: "CLzma", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // ISA-L's igzip inflates about five times faster than zlib; gzip is the
        // usual backup compression, so it sets the restore pipeline's pace.
        .systemLibrary(name: "CIsal", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        // Tarsnap's scrypt library, the one the `scrypt` program uses: its
        // SIMD core derives a key about a quarter faster than OpenSSL's, and
        // derivation bounds a v4 restore. Debian ships no .pc file for it.
        .systemLibrary(name: "CScryptKDF", providers: [.apt(["libscrypt-kdf-dev"])]),
        // Linux system calls that Swift's Glibc module leaves out (copy_file_range).
        .systemLibrary(name: "CLinux"),
        .target(
            name: "QubesBackup",
            dependencies: ["COpenSSL", "CZlib", "CBzip2", "CLzma", "CZstd", "CIsal", "CScryptKDF", "CLinux"]
        ),
        .target(
            name: "QubesBackupCLI",
            dependencies: [
                "QubesBackup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The tools' commands; each executable below only calls one.
        .target(name: "QBTools", dependencies: toolDependencies),
        .executableTarget(name: "qb-hmac", dependencies: ["QBTools"]),
        .executableTarget(name: "qb-header", dependencies: ["QBTools"]),
        .executableTarget(name: "qb-decompress", dependencies: ["QBTools"]),
        .executableTarget(name: "qb-decrypt", dependencies: ["QBTools"]),
        .executableTarget(name: "qb-untar", dependencies: ["QBTools"]),
        .executableTarget(name: "qb-restore", dependencies: ["QBTools"]),
        .executableTarget(name: "qb-fs", dependencies: ["QBTools"]),
        .executableTarget(name: "qb", dependencies: ["QBTools", "QubesBackupCLI"]),
        // Shared by the test targets: running the built tools, finding the
        // fixtures, making scratch directories.
        .target(name: "QBTestSupport", path: "Tests/Support"),
        .testTarget(
            name: "QubesBackupTests",
            dependencies: ["QubesBackup", "QBTestSupport"]
        ),
        // Runs the built executables; depending on them makes `swift test` build them.
        .testTarget(
            name: "CLITests",
            dependencies: ["QBTestSupport", "QubesBackupCLI", "qb-hmac", "qb-header", "qb-decompress", "qb-decrypt", "qb-untar", "qb-restore", "qb-fs", "qb"]
        ),
    ]
)
