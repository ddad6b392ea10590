import Foundation
import Testing
import QBTestSupport
import QubesBackupCLI

/// One version for every tool, and the multi-call `qb` of `make dist` and
/// `make deb` (issue 17): `qb-TOOL` as a symbolic link to `qb`, or `qb TOOL`,
/// behaves as the tool itself, and its messages name the tool.
@Suite struct MultiCallTests {
    static let tools = ["qb-untar", "qb-hmac", "qb-decrypt", "qb-decompress", "qb-header", "qb-restore", "qb-fs"]
    static var qb: String { Repo.binaries.appendingPathComponent("qb").path }

    /// The VERSION file (which names the tarball and the .deb) and the
    /// version compiled into the tools say the same.
    @Test func versionFileMatchesTheSource() throws {
        let file = try String(contentsOf: Repo.root.appendingPathComponent("VERSION"), encoding: .utf8)
        #expect(file.trimmingCharacters(in: .whitespacesAndNewlines) == qbVersion)
        #expect(file == qbVersion + "\n", "VERSION holds the version and one newline")
    }

    @Test func everyToolAnswersVersion() throws {
        for tool in Self.tools {
            let r = try run(tool, ["--version"])
            #expect(r.status == 0, "\(tool)")
            #expect(r.stdoutText == qbVersion + "\n", "\(tool): \(r.stdoutText)")
        }
        let r = try run(Self.qb, ["--version"])
        #expect(r.status == 0 && r.stdoutText == qbVersion + "\n")
    }

    /// Through a symbolic link named after a tool, `qb` is that tool, and
    /// says so in its messages.
    @Test func symlinkNamesTheTool() throws {
        let dir = try ScratchDirectory()
        for tool in Self.tools {
            try FileManager.default.createSymbolicLink(atPath: dir.file(tool).path, withDestinationPath: Self.qb)
            let version = try run(dir.file(tool).path, ["--version"])
            #expect(version.status == 0 && version.stdoutText == qbVersion + "\n", "\(tool)")
            let help = try run(dir.file(tool).path, ["--help"])
            #expect(help.stdoutText.contains("USAGE: \(tool) "), "\(tool)")
        }
        let missing = try run(dir.file("qb-untar").path, ["-t", "-f", dir.file("absent.tar").path])
        #expect(missing.status == 4)
        #expect(missing.stderr.hasPrefix("qb-untar: "), "\(missing.stderr)")
        let bad = try run(dir.file("qb-hmac").path, ["--no-such-option"])
        #expect(bad.status == 2)
        #expect(bad.stderr.hasPrefix("qb-hmac: "), "\(bad.stderr)")
    }

    /// `qb TOOL ARGS…` and `qb qb-TOOL ARGS…` run the tool on ARGS, and its
    /// messages name `qb-TOOL`, not `qb`.
    @Test func subcommandForm() throws {
        let dir = try ScratchDirectory()
        let listed = try run(Self.qb, ["untar", "-i", "-t", "-f", Repo.fixture("v4-gzip.qubes").path])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdoutText.hasPrefix("backup-header\n"), "\(listed.stdoutText)")
        let same = try run(Self.qb, ["qb-untar", "-i", "-t", "-f", Repo.fixture("v4-gzip.qubes").path])
        #expect(same.stdout == listed.stdout)
        let missing = try run(Self.qb, ["untar", "-t", "-f", dir.file("absent.tar").path])
        #expect(missing.status == 4)
        #expect(missing.stderr.hasPrefix("qb-untar: "), "\(missing.stderr)")
        let bad = try run(Self.qb, ["restore", "--no-such-option"])
        #expect(bad.status == 2)
        #expect(bad.stderr.hasPrefix("qb-restore: "), "\(bad.stderr)")
        #expect(try run(Self.qb, ["header", "--help"]).stdoutText.contains("USAGE: qb-header "))
    }

    /// `qb` alone, or with a name that is no tool, is refused with status 2
    /// and the list of tools; `qb --help` prints that list.
    @Test func refusesWhatIsNoTool() throws {
        let none = try run(Self.qb, [])
        #expect(none.status == 2)
        #expect(none.stderr.hasPrefix("qb: name a tool\n"))
        for tool in Self.tools { #expect(none.stderr.contains("\n  \(tool.dropFirst(3)) "), "\(tool)") }
        let unknown = try run(Self.qb, ["tar", "-t"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.hasPrefix("qb: unknown tool 'tar'; the tools are untar, hmac,"), "\(unknown.stderr)")
        #expect(unknown.stdout.isEmpty)
        let help = try run(Self.qb, ["--help"])
        #expect(help.status == 0 && help.stdoutText.hasPrefix("USAGE: qb TOOL"))
        // A link whose name is no tool is the plain `qb`.
        let dir = try ScratchDirectory()
        try FileManager.default.createSymbolicLink(atPath: dir.file("qb-nosuch").path, withDestinationPath: Self.qb)
        let odd = try run(dir.file("qb-nosuch").path, ["--version"])
        #expect(odd.status == 0 && odd.stdoutText == qbVersion + "\n")
    }
}
