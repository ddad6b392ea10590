/// The one error type of the library. Every failure a user can meet is one of
/// these, so the command-line layer maps them to messages and exit codes with
/// an exhaustive switch and nothing unexpected reaches the user.
public struct QBError: Error, Sendable, CustomStringConvertible {
    /// Failure classes stay distinct: "wrong passphrase", "tampered",
    /// "truncated" and "not allowed" must never collapse into one message.
    public enum Kind: Sendable, Equatable {
        /// A MAC did not match: wrong passphrase or tampered data.
        case authentication
        /// The bytes violate their format.
        case malformed
        /// The input ended before its format says it ends.
        case truncated
        /// Valid, but not handled or not allowed (filter names, versions).
        case unsupported
        /// Refused by policy: path traversal, link escapes.
        case unsafe
        /// A hostile size, count or work factor above a documented limit.
        case limitExceeded
        /// The system refused an operation; the value is `errno`.
        case io(Int32)
        /// Memory a step needs could not be had even with nothing else of
        /// this process's running: an allocation refused (RLIMIT_AS, no
        /// memory left to map). A kind of its own, so that it is never
        /// taken for a wrong passphrase or for bad input.
        case outOfMemory
        /// Bad usage detected by the library (an unknown passphrase source kind).
        case usage
        /// The crypto library (OpenSSL) refused an operation that valid input
        /// cannot make fail: allocation, initialisation, an update step. Not
        /// an I/O error: there is no `errno`.
        case cryptoLibrary
        /// A stage stopped because another one failed or stopped first (a
        /// `ByteChannel` whose reader stopped, a restore unwound past a file):
        /// the other stage's error is the one to report.
        case cancelled
        /// A bug or an impossible state (a job that never ran, a thread that
        /// ended without a result).
        case internalError
    }

    public var kind: Kind
    /// What the error is about: a member name, a path, `backup-header`.
    public var subject: String?
    /// Lower case, no final period.
    public var message: String
    /// What to do or what it probably means, when known.
    public var hint: String?

    public init(_ kind: Kind, _ message: String, subject: String? = nil, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.subject = subject
        self.hint = hint
    }

    /// The same error, about `subject` unless it already names one.
    public func about(_ subject: String) -> QBError {
        var copy = self
        if copy.subject == nil { copy.subject = subject }
        return copy
    }

    /// `subject: message (hint)`, the form every tool prints after its name.
    public var description: String {
        var line = ""
        if let subject { line += subject + ": " }
        line += message
        if let hint { line += " (" + hint + ")" }
        return line
    }
}

extension QBError {
    public static let wrongPassphraseOrTampered = "wrong passphrase or tampered backup"
}
