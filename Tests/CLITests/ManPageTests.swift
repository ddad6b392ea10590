import Foundation
import Testing
import QBTestSupport

/// Every option a tool accepts is documented in its man page.
@Suite struct ManPageTests {
    @Test(arguments: ["qb-hmac", "qb-header", "qb-decrypt", "qb-decompress", "qb-untar", "qb-restore", "qb-fs"])
    func everyOptionIsInTheManPage(tool: String) throws {
        let help = try run(tool, ["--help"])
        #expect(help.status == 0)
        let page = try String(contentsOf: Repo.root.appendingPathComponent("man/\(tool).1"), encoding: .utf8)
        // Only the OPTIONS list: the discussion may mention other tools' options.
        let optionLines = help.stdoutText.components(separatedBy: "OPTIONS:").last!.split(separator: "\n")
            .filter { $0.hasPrefix("  -") }  // continuation lines are indented further
        var options: Set<String> = []
        for line in optionLines {
            for word in line.split(separator: " ") where word.hasPrefix("--") && word != "--help" {
                let name = word.dropFirst(2).prefix { $0.isLetter || $0 == "-" }
                if !name.isEmpty { options.insert(String(name)) }
            }
        }
        #expect(!options.isEmpty)
        for option in options {
            #expect(page.contains("Fl -\(option)") || page.contains("Fl \\-\(option)"), "\(tool): --\(option) is not in man/\(tool).1")
        }
    }
}
