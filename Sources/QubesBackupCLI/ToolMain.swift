#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import QubesBackup

/// A qb command: swift-argument-parser's command with qb's error handling.
/// Every error becomes one line on standard error and an `ExitStatus`.
public protocol QBCommand: ParsableCommand {}

/// Thrown by a command that has already told the user why it fails (a
/// `FAILED` verdict on stdout) and only needs to exit with a status.
public struct ExitWith: Error {
    public let status: ExitStatus
    public init(_ status: ExitStatus) { self.status = status }
}

extension QBCommand {
    /// What swift-argument-parser writes before an error's message in place
    /// of its `Error: `, so its text reads `qb-xxx: message` like every other
    /// error of the tools, with no rewriting of that text afterwards.
    public static var _errorPrefix: String { Diagnostics.toolName + ": " }

    public static func main() {
        main(arguments: nil)
    }

    /// Runs the command on `arguments` (nil: the process's own, after
    /// argv[0]) and exits with its status; `qb TOOL ARGS…` passes ARGS.
    public static func main(arguments: [String]?) -> Never {
        SignalCleanup.install()
        let status: ExitStatus
        FileDescriptor.standardInput().widenPipe()
        FileDescriptor.standardOutput().widenPipe()
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            status = .success
        } catch let error as QBError {
            Diagnostics.error(error)
            status = ExitStatus(error.kind)
        } catch let error as ExitWith {
            status = error.status
        } catch {
            // Everything else comes from swift-argument-parser (a bad option,
            // a missing value, --help, --version); its own classification
            // decides, not its text.
            let code = exitCode(for: error)
            if code == .success {
                // --help, --version: their text is the output.
                print(fullMessage(for: error))
                status = .success
            } else {
                // Starts `qb-xxx: ` through `errorPrefix` below; empty for a
                // bare `ExitCode`, which has nothing to say.
                let message = fullMessage(for: error)
                if !message.isEmpty { Diagnostics.printLine(message) }
                status = ExitStatus(parserExit: code)
            }
        }
        Glibc.exit(status.rawValue)
    }
}
