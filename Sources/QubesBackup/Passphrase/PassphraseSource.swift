#if canImport(Glibc)
import Glibc
#endif

/// Where a passphrase comes from when it is not typed at the terminal: the
/// same `method:argument` vocabulary in every tool (scrypt's and openssl's).
public enum PassphraseSource: Equatable, Sendable {
    /// `env:VAR` — the value of an environment variable, as is.
    case environment(String)
    /// `file:PATH` — the first line of a file, line ending removed.
    case file(String)
    /// `fd:N` — the first line read from an open descriptor.
    case descriptor(Int32)
    /// `pass:TEXT` — the text itself; visible to other users in the process list.
    case literal(String)

    /// The longest passphrase line accepted from a file or descriptor.
    public static let maximumLength = 65536

    /// Parses `env:VAR`, `file:PATH`, `fd:N` or `pass:TEXT`.
    public init(parsing text: String) throws(QBError) {
        guard let colon = text.firstIndex(of: ":") else {
            throw QBError(.usage, "passphrase source '\(text)' has no method", hint: "use env:VAR, file:PATH, fd:N or pass:TEXT")
        }
        let method = text[..<colon], argument = String(text[text.index(after: colon)...])
        switch method {
        case "env" where !argument.isEmpty: self = .environment(argument)
        case "file" where !argument.isEmpty: self = .file(argument)
        case "fd":
            guard let n = Int32(argument), n >= 0 else {
                throw QBError(.usage, "passphrase source 'fd:\(argument)' needs a descriptor number")
            }
            self = .descriptor(n)
        case "pass": self = .literal(argument)
        default:
            throw QBError(.usage, "unknown passphrase source '\(text)'", hint: "use env:VAR, file:PATH, fd:N or pass:TEXT")
        }
    }

    /// True for `pass:`, which other local users can read from the process list.
    public var isVisibleToOtherUsers: Bool {
        if case .literal = self { return true }
        return false
    }

    /// Reads the passphrase. An empty passphrase is refused: no Qubes backup
    /// can have one, and an empty variable or file is almost always a mistake.
    public func read() throws(QBError) -> Secret {
        let bytes: [UInt8]
        switch self {
        case .environment(let name):
            guard let value = getenv(name) else {
                throw QBError(.usage, "environment variable \(name) is not set", subject: "passphrase")
            }
            bytes = Array(String(cString: value).utf8)
        case .file(let path):
            let fd = try FileDescriptor.open(forReading: path)
            bytes = try Self.firstLine(of: fd)
        case .descriptor(let n):
            bytes = try Self.firstLine(of: FileDescriptor(rawValue: n, name: "fd:\(n)", owned: false))
        case .literal(let text):
            bytes = Array(text.utf8)
        }
        if bytes.isEmpty { throw QBError(.usage, "the passphrase is empty", subject: "passphrase") }
        return Secret(bytes)
    }

    /// Reads one byte at a time so that nothing after the first line is taken
    /// from a descriptor that something else will read next.
    public static func firstLine(of fd: FileDescriptor) throws(QBError) -> [UInt8] {
        var line: [UInt8] = []
        let one = IOBuffer(capacity: 1)
        while true {
            one.clear()
            if try fd.read(into: one) == 0 { break }
            var byte: UInt8 = 0
            one.withReadable { byte = $0.unsafeLoad(as: UInt8.self) }
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
            if line.count > maximumLength {
                throw QBError(.limitExceeded, "passphrase line is longer than \(maximumLength) bytes", subject: fd.name)
            }
        }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        return line
    }
}
