import ArgumentParser
import QubesBackup

/// The exit codes of every qb tool — the only place they are defined. Each man
/// page's EXIT STATUS section lists the same table.
public enum ExitStatus: Int32, Sendable {
    /// The whole input was processed and everything checked out.
    case success = 0
    /// Authentication failed: wrong passphrase or tampered data.
    case authenticationFailed = 1
    /// Bad command line or missing passphrase.
    case usage = 2
    /// Malformed, truncated, unsupported or unsafe input, or over a limit.
    case badInput = 3
    /// An I/O or system error (memory that could not be had among them), a failure of the crypto library, a stage
    /// cancelled by another's failure, or an internal error.
    case system = 4

    public init(_ kind: QBError.Kind) {
        switch kind {
        case .authentication: self = .authenticationFailed
        case .usage: self = .usage
        case .malformed, .truncated, .unsupported, .unsafe, .limitExceeded: self = .badInput
        case .io: self = .system
        // 4: the machine, not the backup, fell short; 1 would send the user
        // hunting for a passphrase that was right.
        case .outOfMemory: self = .system
        // 4, not a new code: the documented codes are 0–4 and scripts rely on
        // 3 meaning "the input is bad". OpenSSL refusing an allocation or an
        // initialisation says nothing about the input; it is the system
        // failing, as ENOMEM would be.
        case .cryptoLibrary: self = .system
        // 4: a stage cancelled because another failed reports the other's
        // error when it has one; when it surfaces alone nothing is known
        // about the input, only that processing stopped (as EPIPE would).
        case .cancelled: self = .system
        // 4: a bug says nothing about the input either, and these errors
        // were I/O errors with errno 0, status 4, before they had a kind of their own.
        case .internalError: self = .system
        }
    }
}

extension ExitStatus {
    /// The status for an error swift-argument-parser classified: a command
    /// line it refused (EX_USAGE, 64) is a usage error; `.failure` (1), which
    /// it gives any other error thrown from `run()`, is bad input, as before.
    init(parserExit code: ExitCode) {
        switch code {
        case .validationFailure: self = .usage
        case .failure: self = .badInput
        default: self = .usage
        }
    }
}
