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

/// The CPUs this process may keep busy: its affinity mask and its cgroup's
/// CPU quota, not merely the CPUs online.
public enum ProcessorCount {
    public static var usable: Int { SystemResources.current().cpus }
}

/// `-j, --jobs N`: the most chunks worked on at once. Without it, as many
/// as the CPUs this process may use; in both cases no more than the
/// available memory pays for (`JobPlan`, in the library).
public struct JobsOption<Help: OptionHelp>: ParsableArguments {
    @Option(name: [.customLong("jobs"), .customShort("j")], help: ArgumentHelp(Help.text, valueName: "n"))
    public var value: Int?

    public init() {}

    public func validate() throws {
        if let value, value < 1 { throw ValidationError("--jobs must be at least 1") }
    }

    /// The library's job options; with `verbose`, the plan and any later
    /// lowering are told on standard error.
    public func options(verbose: Bool) -> JobOptions {
        JobOptions(maximum: value,
                   planned: { plan in if verbose { JobReport.planned(plan) } },
                   lowered: { jobs in if verbose { JobReport.lowered(to: jobs) } })
    }
}

/// How the tools tell what `JobPlan` chose.
public enum JobReport {
    /// `qb-xxx: 4 jobs: 8 CPUs, 4.6 GiB available, 1.1 GiB each`.
    public static func planned(_ plan: JobPlan) {
        Diagnostics.printLine(Diagnostics.toolName + ": " + plan.description)
    }

    /// Told when a derivation could not get its memory while others ran.
    public static func lowered(to jobs: Int) {
        Diagnostics.printLine(Diagnostics.toolName + ": an allocation was refused: " + (jobs == 1 ? "1 job" : "\(jobs) jobs") + " at once from now on")
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

/// `--max-memory BYTES`: the largest scrypt memory accepted; without it,
/// what this machine has available. Unchecked: a limit below the backup's
/// parameters refuses its first envelope, naming what it needs.
public struct MaxMemoryOption<Help: OptionHelp>: ParsableArguments {
    @Option(name: .customLong("max-memory"), help: ArgumentHelp(Help.text, valueName: "bytes"))
    public var value: Int?

    public init() {}

    /// The scrypt limits: the memory given, or what is available now.
    public var limits: ScryptLimits {
        value.map { ScryptLimits(maximumMemory: $0) } ?? .affordable()
    }
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
