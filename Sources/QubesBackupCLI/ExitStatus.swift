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
    /// An I/O or system error.
    case system = 4

    public init(_ kind: QBError.Kind) {
        switch kind {
        case .authentication: self = .authenticationFailed
        case .usage: self = .usage
        case .malformed, .truncated, .unsupported, .unsafe, .limitExceeded: self = .badInput
        case .io: self = .system
        }
    }
}
