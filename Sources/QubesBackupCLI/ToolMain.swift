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
    public static func main() {
        SignalCleanup.install()
        let status: ExitStatus
        FileDescriptor.standardInput().widenPipe()
        FileDescriptor.standardOutput().widenPipe()
        do {
            var command = try parseAsRoot()
            try command.run()
            status = .success
        } catch let error as QBError {
            Diagnostics.error(error)
            status = ExitStatus(error.kind)
        } catch let error as ExitWith {
            status = error.status
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                // --help, --version: their text is the output.
                print(fullMessage(for: error))
                status = .success
            } else {
                let message = fullMessage(for: error)
                if !message.isEmpty { Diagnostics.printLine(message.hasPrefix("Error: ") ? Diagnostics.toolName + ": " + message.dropFirst(7) : message) }
                status = code == .validationFailure || code.rawValue == 64 ? .usage : (code == .failure ? .badInput : .usage)
            }
        }
        Glibc.exit(status.rawValue)
    }
}
