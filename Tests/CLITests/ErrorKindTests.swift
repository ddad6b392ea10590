import Foundation
import Testing
import QBTestSupport
import QubesBackup
import QubesBackupCLI

/// Errors say what happened (issue 16, part 4): internal, crypto-library and
/// cancellation failures have kinds of their own, mapped to an exit status in
/// one place, and nothing recognises an error by its text.
@Suite struct ErrorKindTests {
    @Test func everyKindHasItsStatus() {
        #expect(ExitStatus(.authentication) == .authenticationFailed)
        #expect(ExitStatus(.usage) == .usage)
        for kind in [QBError.Kind.malformed, .truncated, .unsupported, .unsafe, .limitExceeded] {
            #expect(ExitStatus(kind) == .badInput, "\(kind)")
        }
        // The new kinds keep status 4, which these errors had as `.io(0)`.
        // Memory that could not be had is the machine's failure: 4, never 1.
        for kind in [QBError.Kind.io(5), .cryptoLibrary, .cancelled, .internalError, .outOfMemory] {
            #expect(ExitStatus(kind) == .system, "\(kind)")
        }
    }

    /// Lines of the library and tool sources that contain `needle`.
    static func sourceLines(containing needle: String) throws -> [String] {
        let sources = Repo.root.appendingPathComponent("Sources")
        var hits: [String] = []
        let walk = FileManager.default.enumerator(atPath: sources.path)
        while let relative = walk?.nextObject() as? String {
            guard relative.hasSuffix(".swift") else { continue }
            let text = try String(contentsOf: sources.appendingPathComponent(relative), encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where line.contains(needle) {
                hits.append("\(relative):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        return hits
    }

    /// errno 0 is no I/O error: such failures have a kind that says what they are.
    @Test func noIOErrorWithoutAnErrno() throws {
        let hits = try Self.sourceLines(containing: ".io(0)")
        #expect(hits.isEmpty, "\(hits)")
    }

    /// Errors are told apart by kind: no comparison of message texts, and
    /// no rewriting of swift-argument-parser's `Error: ` label.
    @Test func noErrorIsRecognisedByItsText() throws {
        for needle in [".message ==", "message.hasPrefix(", "\"Error: \""] {
            let hits = try Self.sourceLines(containing: needle)
            #expect(hits.isEmpty, "\(needle): \(hits)")
        }
    }

    /// swift-argument-parser's refusals read `qb-xxx: message`, then its
    /// help and usage lines, with status 2; --help is output, status 0.
    @Test(arguments: [
        (["--bogus"], "qb-hmac: Unknown option '--bogus'. Did you mean '--jobs'?"),
        (["-j", "x"], "qb-hmac: The value 'x' is invalid for '-j <n>'"),
        (["--passphrase"], "qb-hmac: Missing value for '--passphrase <source>'"),
    ])
    func parserErrorsNameTheTool(arguments: [String], firstLine: String) throws {
        let r = try run("qb-hmac", arguments)
        #expect(r.status == 2, "\(r.stderr)")
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.first == firstLine, "\(r.stderr)")
        #expect(lines.contains { $0.hasPrefix("Usage: qb-hmac ") }, "\(r.stderr)")
        #expect(!r.stderr.contains("Error:"), "\(r.stderr)")
        #expect(r.stdoutText.isEmpty)
    }

    @Test func helpIsOutput() throws {
        let r = try run("qb-hmac", ["--help"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutText.contains("USAGE: qb-hmac"), "\(r.stdoutText)")
        #expect(r.stderr.isEmpty)
    }
}
