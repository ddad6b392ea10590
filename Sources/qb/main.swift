#if canImport(Glibc)
import Glibc
#endif
import QBTools
import QubesBackupCLI

// The multi-call binary of the release tarball and the .deb: one program for
// every tool, so the statically linked Swift runtime is carried once.
//   qb-untar ARGS…   (a symbolic link to qb): the tool argv[0] names
//   qb untar ARGS…   the same, by its first argument
//   qb --help, qb --version

let arguments = CommandLine.arguments
let invokedAs = arguments.first.flatMap { $0.split(separator: "/").last.map(String.init) } ?? "qb"

if invokedAs.hasPrefix("qb-"), let tool = QBTool(rawValue: String(invokedAs.dropFirst(3))) {
    tool.main()
}

func usage() -> String {
    let width = QBTool.allCases.map(\.rawValue.count).max() ?? 0
    let lines = QBTool.allCases.map { "  " + $0.rawValue + String(repeating: " ", count: width + 2 - $0.rawValue.count) + $0.abstract }
    return """
        USAGE: qb TOOL [ARGUMENTS…]   (or run qb-TOOL, a symbolic link to qb)

        TOOLS:
        \(lines.joined(separator: "\n"))

          See 'qb TOOL --help' or man qb-TOOL.
        """
}

guard arguments.count >= 2 else {
    Diagnostics.printLine("qb: name a tool\n" + usage())
    exit(ExitStatus.usage.rawValue)
}
let first = arguments[1]
switch first {
case "-h", "--help", "help":
    print(usage())
    exit(ExitStatus.success.rawValue)
case "--version":
    print(qbVersion)
    exit(ExitStatus.success.rawValue)
default:
    let name = first.hasPrefix("qb-") ? String(first.dropFirst(3)) : first
    guard let tool = QBTool(rawValue: name) else {
        Diagnostics.printLine("qb: unknown tool '\(first)'; the tools are " + QBTool.allCases.map(\.rawValue).joined(separator: ", "))
        exit(ExitStatus.usage.rawValue)
    }
    Diagnostics.toolNameOverride = tool.programName
    tool.main(arguments: Array(arguments.dropFirst(2)))
}
