import QubesBackupCLI

/// Every qb tool, by the name after `qb-`. Each `qb-*` executable is one line
/// calling its tool's `main()`; the multi-call `qb` chooses one by argv[0] or
/// by its first argument.
public enum QBTool: String, CaseIterable, Sendable {
    case untar, hmac, decrypt, decompress, header, restore, fs

    /// The program name: `qb-untar`.
    public var programName: String { "qb-" + rawValue }

    /// What the tool does, in one line (its --help abstract).
    public var abstract: String { command.configuration.abstract }

    private var command: any QBCommand.Type {
        switch self {
        case .untar: QBUntar.self
        case .hmac: QBHmac.self
        case .decrypt: QBDecrypt.self
        case .decompress: QBDecompress.self
        case .header: QBHeader.self
        case .restore: QBRestore.self
        case .fs: QBFs.self
        }
    }

    /// Runs the tool on `arguments` (nil: the process's own after argv[0])
    /// and exits with its status.
    public func main(arguments: [String]? = nil) -> Never {
        command.main(arguments: arguments)
    }
}
