#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import QubesBackup

// The tuning and limit options several tools take. Each is an option group
// holding the option's name, value name, default and check; its help line
// comes from the tool, since that names the tool's own modes ("With
// --check: ..."), as a nested type conforming to `OptionHelp`.

/// The help line of one shared option, as one tool words it.
public protocol OptionHelp {
    static var text: String { get }
}

/// The default number of parallel jobs: one per online CPU.
public enum ProcessorCount {
    public static var online: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}

/// `-j, --jobs N`: chunks worked on at once.
public struct JobsOption<Help: OptionHelp>: ParsableArguments {
    @Option(name: [.customLong("jobs"), .customShort("j")], help: ArgumentHelp(Help.text, valueName: "n"))
    public var value = ProcessorCount.online

    public init() {}

    public func validate() throws {
        if value < 1 { throw ValidationError("--jobs must be at least 1") }
    }
}

/// `--max-size BYTES`: the largest chunk held in memory while it is
/// authenticated. Unchecked: a limit too small for the backup refuses its
/// first chunk, naming the limit.
public struct MaxSizeOption<Help: OptionHelp>: ParsableArguments {
    @Option(name: .customLong("max-size"), help: ArgumentHelp(Help.text, valueName: "bytes"))
    public var value = ChunkSizeLimit.defaultMaximum

    public init() {}
}

/// `--max-memory BYTES`: the largest scrypt memory accepted. Unchecked: a
/// limit below the backup's parameters refuses its first envelope.
public struct MaxMemoryOption<Help: OptionHelp>: ParsableArguments {
    @Option(name: .customLong("max-memory"), help: ArgumentHelp(Help.text, valueName: "bytes"))
    public var value = ScryptLimits.default.maximumMemory

    public init() {}
}

/// `--max-sparse-entries N`: the most regions a sparse member's map may list.
public struct MaxSparseEntriesOption<Help: OptionHelp>: ParsableArguments {
    @Option(name: .customLong("max-sparse-entries"), help: ArgumentHelp(Help.text, valueName: "n"))
    public var value = TarLimits.default.maxSparseEntries

    public init() {}

    public func validate() throws {
        if value < 1 { throw ValidationError("--max-sparse-entries must be at least 1") }
    }
}
