import Foundation
import Testing
import QBTestSupport

/// Every qb command a user is shown runs as shown: the commands of README.md's
/// code blocks, of the man pages' EXAMPLES (and qubes-backup(5)'s
/// PROCEDURES) and of each tool's --help "Examples:" are taken out of the
/// text the user reads, split like the shell splits them, and run.
///
/// How "the tool's own parser accepts it" is checked, with no hook in the
/// tools: each command runs for real with exactly its words (the shell's
/// quoting and expansions applied, redirections dropped), in an empty
/// scratch directory, stdin /dev/null, no controlling terminal, at most
/// 5 s. swift-argument-parser rejects a command line before `run()` with
/// status 2 and a "Usage:" line; past the parser, the tool can only fail on
/// the missing files and input (3, 4), or with status 2 for a passphrase it
/// cannot ask for. Anything else — an unknown option, a missing value, a
/// validation error, a hang — fails the test, and so do a compression
/// filter's name given as qb-decompress's FILE argument, a `...` standing
/// for options, and a qb-hmac without --check piped into a next stage (it
/// writes a verdict, not the chunks' bytes).
@Suite struct ExampleTests {
    static let tools = ["qb-hmac", "qb-header", "qb-decompress", "qb-decrypt", "qb-untar", "qb-restore", "qb-fs"]
    static let pages = tools.map { "man/\($0).1" } + ["man/qubes-backup.5"]

    @Test func readmeCommandsParse() throws {
        let text = try String(contentsOf: Repo.root.appendingPathComponent("README.md"), encoding: .utf8)
        try check(ExampleText.markdownBlocks(text), from: "README.md", expecting: Set(Self.tools))
    }

    @Test(arguments: pages)
    func manPageExamplesParse(page: String) throws {
        let text = try String(contentsOf: Repo.root.appendingPathComponent(page), encoding: .utf8)
        let tool = page.hasSuffix(".1") ? String(page.dropFirst(4).dropLast(2)) : "qb-untar"
        try check(ExampleText.mdocExamples(text), from: page, expecting: [tool])
    }

    @Test(arguments: tools)
    func helpExamplesParse(tool: String) throws {
        let help = try run(tool, ["--help"])
        #expect(help.status == 0)
        let (blocks, problems) = ExampleText.helpExamples(help.stdoutText)
        for problem in problems { Issue.record("\(tool) --help: \(problem)") }
        try check(blocks, from: "\(tool) --help", expecting: [tool])
    }

    /// Splits the blocks into commands, runs each qb one, and records every
    /// problem. `expecting`: tools that must appear (so that a source whose
    /// examples stopped being found fails instead of testing nothing).
    func check(_ blocks: [String], from source: String, expecting: Set<String>) throws {
        let scanner = ShellScanner(values: ExampleText.values)
        for block in blocks { scanner.scan(block) }
        for problem in scanner.problems { Issue.record("\(source): \(problem)") }
        let commands = scanner.commands.filter { ExampleText.qbCommand($0.words) != nil }
        let seen = Set(commands.map { ExampleText.qbCommand($0.words)![0] })
        #expect(expecting.isSubset(of: seen), "\(source): no example of \(expecting.subtracting(seen).sorted()) found")
        for command in commands {
            let words = ExampleText.qbCommand(command.words)!
            if let problem = try ExampleText.refusal(words, pipedOn: command.pipedOn) {
                Issue.record("\(source): `\(words.joined(separator: " "))`: \(problem)")
            }
        }
    }

    /// The scanner itself: quoting, expansions, pipelines, substitutions.
    @Test func scannerSplitsLikeTheShell() {
        let scanner = ShellScanner(values: ["P": "qubes", "f": "a.000.enc"])
        scanner.scan(#"""
        eval "$(qb-header --verify x.hmac --passphrase env:P \
            --shell h)" # comment | qb-nothing
        id=$(qb-a 'one two' "$P" ${f%.enc}) && qb-b -x -C d < in 2>/dev/null; qb-c \e
        qb-untar -M -f <(qb-d < v.000 | qb-e -f gzip) | tar -x
        """#)
        #expect(scanner.problems.isEmpty)
        let commands = scanner.commands.compactMap { ExampleText.qbCommand($0.words) }
        #expect(scanner.commands.filter(\.pipedOn).map { $0.words[0] } == ["qb-d", "qb-untar"])
        #expect(commands == [
            ["qb-header", "--verify", "x.hmac", "--passphrase", "env:P", "--shell", "h"],
            ["qb-a", "one two", "qubes", "a.000"],
            ["qb-b", "-x", "-C", "d"],
            ["qb-c", "e"],
            ["qb-d"], ["qb-e", "-f", "gzip"],
            ["qb-untar", "-M", "-f", "/dev/null"],
        ])
    }
}

/// Runs the README's worked examples with the small tools, copied out of
/// README.md as they are written, against the sample backups.
@Suite struct ReadmePipelineTests {
    /// The fenced code block of README.md that contains `marker`, minus the
    /// line that reads the passphrase from the terminal (P comes from the
    /// environment instead).
    static func script(containing marker: String, readsPassphrase: Bool = true) throws -> String {
        let text = try String(contentsOf: Repo.root.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = ExampleText.markdownBlocks(text, fencedOnly: true).filter { $0.contains(marker) }
        try #require(blocks.count == 1, "README.md: \(blocks.count) code blocks contain \(marker)")
        let lines = blocks[0].split(separator: "\n", omittingEmptySubsequences: false)
        let kept = lines.filter { !$0.hasPrefix("read -rs P") }
        if readsPassphrase {
            try #require(kept.count == lines.count - 1, "README.md: the block with \(marker) no longer reads P with read -rs P")
        }
        return kept.joined(separator: "\n")
    }

    /// Runs `script` with bash in a scratch directory where backup.qubes is
    /// `fixture`; P is the fixture's passphrase.
    func runScript(_ script: String, on fixture: String) throws -> (RunResult, ScratchDirectory) {
        let dir = try ScratchDirectory()
        try FileManager.default.createSymbolicLink(at: dir.file("backup.qubes"), withDestinationURL: Repo.fixture(fixture))
        let path = Repo.binaries.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let result = try run("/bin/bash", ["-euo", "pipefail", "-c", script],
                             environment: ["P": "qubes", "PATH": path], directory: dir.url)
        return (result, dir)
    }

    /// Runs `script` in a scratch directory where backup.qubes is `fixture`,
    /// and checks the restored restored/work/private.img.
    func restore(_ fixture: String, with script: String) throws {
        let (result, dir) = try runScript(script, on: fixture)
        #expect(result.status == 0, "\(fixture): \(result.stderr)")
        // qb-header --vms listed the VMs, work among them.
        #expect(result.stdoutText.contains("work"), "\(fixture): \(result.stdoutText)")
        let work = (try Manifest.entry(fixture)["expected"] as! [String: Any])["work"] as! [String: Any]
        let image = (work["files"] as! [String: [String: Any]])["vm3/private.img"]!
        #expect(try sha256(of: dir.file("restored/work/private.img")) == image["sha256"] as? String, "\(fixture)")
    }

    @Test func version3WorkedExample() throws {
        try restore("v3-aes-gzip.qubes", with: Self.script(containing: "qb-hmac --check"))
    }

    @Test func version4WorkedExample() throws {
        try restore("v4-gzip.qubes", with: Self.script(containing: "qb-decrypt --chunks"))
    }

    /// The README's files straight from the backup, on a backup whose VM
    /// "work" has a real ext4 private volume: the listing names the file,
    /// the directory comes out as qb-fs extracts it from the restored
    /// image, and no image is written.
    @Test func filesStraightFromTheBackup() throws {
        let script = try Self.script(containing: "qb-restore --list-files", readsPassphrase: false)
        let (result, dir) = try runScript(script, on: "v4-fs-gzip.qubes")
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdoutText.split(separator: "\n")
        // qb-fs -tv's line of the file, then ls's names.
        #expect(lines.contains { $0.hasPrefix("hrw-r--r-- 1000/1000") && $0.contains(" home/user/Documents/notes.txt ") }, "\(result.stdoutText)")
        #expect(lines.contains("notes.txt") && lines.contains("projects"), "ls: \(result.stdoutText)")
        let imageRoute = try ScratchDirectory()
        let restored = try run("qb-restore", ["--passphrase", "pass:qubes", "-C", imageRoute.url.path, Repo.fixture("v4-fs-gzip.qubes").path, "work"])
        #expect(restored.status == 0, "\(restored.stderr)")
        let extracted = try run("qb-fs", ["-x", "-C", imageRoute.file("qbfs").path, imageRoute.file("work/private.img").path, "/home/user/Documents"])
        #expect(extracted.status == 0, "\(extracted.stderr)")
        // The selected directory's tree: its parents (home, home/user) are
        // made as tar makes a member's missing parents, with the time of
        // the run, by either route.
        let compared = try run("python3", [FilesystemToolTests.scripts.appendingPathComponent("compare-tree.py").path, "--no-special",
                                           imageRoute.file("qbfs/home/user/Documents").path,
                                           dir.file("restored/work/files/home/user/Documents").path])
        #expect(compared.status == 0, "\(compared.stdoutText)\(compared.stderr)\(result.stderr)")
        #expect(!dir.listing().contains { $0.hasSuffix(".img") }, "\(dir.listing())")
    }
}

/// Finding examples in the documents, and judging a run of one.
enum ExampleText {
    /// Plausible values for the shell variables examples use. A variable not
    /// here is reported: give it a value rather than let it vanish.
    static let values: [String: String] = [
        "P": "qubes",
        "QB_COMPRESSION_FILTER": "gzip",
        "QB_CRYPTO_ALGORITHM": "aes-256-cbc",
        "QB_VERSION": "3",
        "QB_BACKUP_ID": "20261101T101500-4711",
        "id": "20261101T101500-4711",
        "f": "vm3/private.img.000",
        "file": "private.img",
        "PWD": "/media/user/usb",
        "PATH": "/usr/bin:/bin",
    ]

    /// Code blocks of a Markdown text: fenced ones, and (unless
    /// `fencedOnly`) those indented by four spaces.
    static func markdownBlocks(_ text: String, fencedOnly: Bool = false) -> [String] {
        var blocks: [String] = [], current: [Substring] = []
        var fenced = false, indented = false
        func close() { if !current.isEmpty { blocks.append(current.joined(separator: "\n")) }; current = [] }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                if fenced { close() }
                fenced.toggle()
            } else if fenced {
                current.append(line)
            } else if !fencedOnly && line.hasPrefix("    ") {
                indented = true
                current.append(line.dropFirst(4))
            } else if indented {
                indented = false
                close()
            }
        }
        close()
        return blocks
    }

    /// The literal blocks (`.Bd -literal` … `.Ed`) and `.Dl` lines of the
    /// EXAMPLES section (and qubes-backup(5)'s PROCEDURES), with mdoc's
    /// escapes undone.
    static func mdocExamples(_ page: String) -> [String] {
        var blocks: [String] = [], current: [String]?
        var section = ""
        func unescape(_ s: Substring) -> String {
            s.replacingOccurrences(of: "\\&", with: "").replacingOccurrences(of: "\\-", with: "-")
                .replacingOccurrences(of: "\\e", with: "\\")
        }
        for line in page.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(".Sh ") { section = String(line.dropFirst(4)) }
            guard section == "EXAMPLES" || section == "PROCEDURES" else { continue }
            if line.hasPrefix(".Bd -literal") {
                current = []
            } else if line.hasPrefix(".Ed"), let lines = current {
                blocks.append(lines.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                if !line.hasPrefix(".") { current!.append(unescape(line)) }
            } else if line.hasPrefix(".Dl ") {
                blocks.append(unescape(line.dropFirst(4)))
            }
        }
        return blocks
    }

    /// The indented lines under "Examples:" in a --help text, as one block,
    /// and a problem for each line the help's 80-column wrapping broke.
    static func helpExamples(_ help: String) -> (blocks: [String], problems: [String]) {
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: "Examples:") else { return ([], ["no \"Examples:\" section"]) }
        var block: [Substring] = [], problems: [String] = []
        for line in lines[(start + 1)...] {
            if line.isEmpty { break }
            if line.hasPrefix("  ") { block.append(line.dropFirst(2)) }
            else { problems.append("example line wrapped at 80 columns, before \"\(line)\": shorten it or break it with \\") }
        }
        return ([block.joined(separator: "\n")], problems)
    }

    /// A simple command's words from the tool name on, when it runs a qb tool
    /// (leading keywords and variable assignments dropped).
    static func qbCommand(_ words: [String]) -> [String]? {
        let keywords: Set<String> = ["do", "then", "else", "elif", "if", "while", "until", "!", "time", "exec", "{"]
        let rest = words.drop { keywords.contains($0) || $0.range(of: "^[A-Za-z_][A-Za-z0-9_]*=", options: .regularExpression) != nil }
        guard let first = rest.first, first.hasPrefix("qb-") else { return nil }
        return Array(rest)
    }

    static let filterNames: Set<String> = ["gzip", "pigz", "bzip2", "pbzip2", "xz", "lzma", "zstd", "zstdmt", "cat", "auto"]

    /// Why the tool refused `words` as a command line, or nil when it
    /// accepted it.
    static func refusal(_ words: [String], pipedOn: Bool) throws -> String? {
        let tool = words[0], arguments = Array(words.dropFirst())
        guard ExampleTests.tools.contains(tool) else { return "there is no tool \(tool)" }
        if arguments.contains("...") { return "'...' stands for options: write them out" }
        // Without --check, qb-hmac prints a verdict or a digest line, not the bytes a next stage needs.
        if tool == "qb-hmac" && pipedOn && !arguments.contains("--check") {
            return "qb-hmac passes bytes down a pipeline only with --check"
        }
        if tool == "qb-decompress" {
            var index = 0
            while index < arguments.count {
                let word = arguments[index]
                if ["-f", "--filter", "--inflate"].contains(word) { index += 2; continue }
                if !word.hasPrefix("-") || word == "-", filterNames.contains(word) {
                    return "'\(word)' is read as the FILE to decompress; a filter is given with -f \(word)"
                }
                index += 1
            }
        }
        let scratch = try ScratchDirectory()
        let result = try run("timeout", ["-k", "2", "5", "setsid", "-w", Repo.binaries.appendingPathComponent(tool).path] + arguments,
                             environment: ["P": "qubes"], directory: scratch.url)
        let stderr = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        let parserSigns = ["Usage:", "for more information", "Unknown option", "Missing expected argument",
                           "Unexpected argument", "choose exactly one", "Error:"]
        if parserSigns.contains(where: stderr.contains) { return "refused by the parser: \(stderr)" }
        if result.status == 124 || result.status == 137 { return "did not finish in 5 s with no input" }
        let runtimeUsage = ["no terminal to ask for the passphrase", "not found in archive"]
        if result.status == 2 && !runtimeUsage.contains(where: stderr.contains) { return "usage error: \(stderr)" }
        return nil
    }
}

/// Splits shell text into simple commands, with the words bash would pass:
/// quotes removed, `$VAR`, `${VAR}`, `${VAR%suffix}` expanded from
/// `values`, comments and redirections dropped, `$(…)` and `<(…)` scanned
/// as commands of their own (a `<(…)` argument becomes /dev/null). Commands
/// end at newlines, `;`, `&`, `|`, `&&`, `||` and parentheses. Backslash-
/// newline continuations must already be joined.
final class ShellScanner {
    /// A simple command, and whether `|` sends its output to another.
    struct Command { var words: [String]; var pipedOn: Bool }

    let values: [String: String]
    private(set) var commands: [Command] = []
    private(set) var problems: [String] = []

    init(values: [String: String]) { self.values = values }

    func scan(_ text: String) { scan(Array(text.replacingOccurrences(of: "\\\n", with: " "))) }

    private func scan(_ c: [Character]) {
        var words: [String] = [], word: String?
        var dropNext = false  // the next word is a redirection's target
        func endWord() {
            if let w = word { if dropNext { dropNext = false } else { words.append(w) } }
            word = nil
        }
        func endCommand(pipedOn: Bool = false) {
            endWord()
            if !words.isEmpty { commands.append(Command(words: words, pipedOn: pipedOn)) }
            words = []
            dropNext = false
        }
        var i = 0
        while i < c.count {
            let ch = c[i]
            switch ch {
            case " ", "\t":
                endWord(); i += 1
            case "|" where i + 1 < c.count && c[i + 1] == "|":
                endCommand(); i += 2
            case "|":
                endCommand(pipedOn: true); i += 1
            case "\n", ";", "&", "(", ")":
                endCommand(); i += 1
            case "#" where word == nil:
                while i < c.count && c[i] != "\n" { i += 1 }
            case "'":
                guard let close = c[(i + 1)...].firstIndex(of: "'") else { problems.append("unterminated '"); return }
                word = (word ?? "") + String(c[(i + 1)..<close]); i = close + 1
            case "\"":
                i = doubleQuoted(c, i + 1, into: &word)
            case "\\":
                if i + 1 < c.count { word = (word ?? "") + String(c[i + 1]) }
                i += 2
            case "$":
                i = dollar(c, i, into: &word)
            case "<", ">":
                if i + 1 < c.count, c[i + 1] == "(" {
                    let close = matching(c, i + 1)
                    scan(Array(c[(i + 2)..<close]))
                    word = (word ?? "") + "/dev/null"
                    i = close + 1
                } else {
                    if let w = word, w.allSatisfy(\.isNumber) { word = nil } else { endWord() }
                    i += 1
                    while i < c.count, c[i] == ">" || c[i] == "<" || c[i] == "&" { i += 1 }
                    dropNext = true
                }
            default:
                word = (word ?? "") + String(ch); i += 1
            }
        }
        endCommand()
    }

    private func doubleQuoted(_ c: [Character], _ start: Int, into word: inout String?) -> Int {
        var i = start
        var w: String? = word ?? ""
        while i < c.count, c[i] != "\"" {
            if c[i] == "\\", i + 1 < c.count, "\"\\$`".contains(c[i + 1]) {
                w! += String(c[i + 1]); i += 2
            } else if c[i] == "$" {
                i = dollar(c, i, into: &w)
            } else {
                w! += String(c[i]); i += 1
            }
        }
        if i >= c.count { problems.append("unterminated \"") }
        word = w
        return i + 1
    }

    private func dollar(_ c: [Character], _ i: Int, into word: inout String?) -> Int {
        let next: Character = i + 1 < c.count ? c[i + 1] : " "
        if next == "(" {
            let close = matching(c, i + 1)
            scan(Array(c[(i + 2)..<close]))
            word = word ?? ""  // the command's output: nothing here
            return close + 1
        }
        if next == "{" {
            guard let close = c[(i + 2)...].firstIndex(of: "}") else { problems.append("unterminated ${"); return c.count }
            let inside = String(c[(i + 2)..<close])
            let name = String(inside.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
            var value = lookup(name)
            let operation = inside.dropFirst(name.count)
            if operation.hasPrefix("%") {
                let suffix = operation.dropFirst()
                if value.hasSuffix(suffix) { value.removeLast(suffix.count) }
            } else if !operation.isEmpty {
                problems.append("expansion ${\(inside)} not understood by the test")
            }
            word = (word ?? "") + value
            return close + 1
        }
        var j = i + 1
        while j < c.count, c[j].isLetter || c[j].isNumber || c[j] == "_" { j += 1 }
        word = (word ?? "") + (j == i + 1 ? "$" : lookup(String(c[(i + 1)..<j])))
        return j
    }

    private func lookup(_ name: String) -> String {
        if let value = values[name] { return value }
        problems.append("no value for $\(name): add a plausible one to ExampleText.values")
        return ""
    }

    /// The index of the `)` that closes the `(` at `open`.
    private func matching(_ c: [Character], _ open: Int) -> Int {
        var depth = 0, i = open
        var quote: Character?
        while i < c.count {
            let ch = c[i]
            if let q = quote {
                if ch == q { quote = nil } else if ch == "\\" && q == "\"" { i += 1 }
            } else if ch == "'" || ch == "\"" {
                quote = ch
            } else if ch == "\\" {
                i += 1
            } else if ch == "(" {
                depth += 1
            } else if ch == ")" {
                depth -= 1
                if depth == 0 { return i }
            }
            i += 1
        }
        problems.append("unbalanced parentheses")
        return c.count
    }
}
