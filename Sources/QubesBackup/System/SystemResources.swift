import Glibc
internal import CLinux

/// What this process may use of the machine: CPUs and memory, as read at
/// one moment (DESIGN.md, "Memory for parallel work"). Every reading is
/// best effort: a file that cannot be read bounds nothing, and the
/// smallest of the bounds that could be read wins.
public struct SystemResources: Sendable, Equatable {
    /// What bounded `cpus`.
    public enum CPUBound: Sendable, Equatable {
        /// The CPUs online (nothing narrower could be read).
        case online
        /// The process's affinity mask (sched_getaffinity, `taskset`).
        case affinity
        /// A cgroup CPU quota: v2 `cpu.max`, v1 `cpu.cfs_quota_us`.
        case cgroupQuota
    }

    /// What bounded `availableMemory`.
    public enum MemoryBound: Sendable, Equatable {
        /// `MemAvailable` of /proc/meminfo: what the kernel can give
        /// without swapping.
        case memAvailable
        /// A memory cgroup's limit less what it already charges (v2
        /// `memory.max`, v1 `memory.limit_in_bytes`).
        case cgroup
        /// RLIMIT_AS (`ulimit -v`, `prlimit --as`) less what the process
        /// already maps.
        case addressSpaceLimit
        /// RLIMIT_DATA (`prlimit --data`) less the process's data mappings.
        case dataSizeLimit
        /// Nothing better could be read: physical memory.
        case physicalMemory
    }

    /// CPUs this process may keep busy; at least 1.
    public var cpus: Int
    public var cpuBound: CPUBound
    /// Bytes this process can still allocate and use without being refused
    /// or killed; at least 0.
    public var availableMemory: Int
    public var memoryBound: MemoryBound

    public init(cpus: Int, cpuBound: CPUBound = .online, availableMemory: Int, memoryBound: MemoryBound = .memAvailable) {
        self.cpus = max(1, cpus)
        self.cpuBound = cpuBound
        self.availableMemory = max(0, availableMemory)
        self.memoryBound = memoryBound
    }

    /// The machine as this process sees it now.
    public static func current() -> SystemResources {
        let files = SystemFiles(root: "")
        return read(files: files, affinityCPUs: Affinity.cpuCount(), limits: ProcessLimits.current(files: files))
    }

    /// Combines the readings: `files` gives /proc and the cgroup
    /// filesystems (a fake tree in tests), the other two what only system
    /// calls tell.
    public static func read(files: SystemFiles, affinityCPUs: Int?, limits: ProcessLimits) -> SystemResources {
        let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var cpus = online, cpuBound = CPUBound.online
        if let affinityCPUs, affinityCPUs >= 1, affinityCPUs < cpus { cpus = affinityCPUs; cpuBound = .affinity }
        let groups = Cgroups(files: files)
        if let quota = groups.cpuQuota(), quota < cpus { cpus = quota; cpuBound = .cgroupQuota }

        var memory = Int.max, memoryBound = MemoryBound.physicalMemory
        func consider(_ bytes: Int?, _ bound: MemoryBound) {
            if let bytes, bytes < memory { memory = bytes; memoryBound = bound }
        }
        consider(files.text("/proc/meminfo").flatMap(Self.memAvailable(meminfo:)), .memAvailable)
        consider(groups.availableMemory(), .cgroup)
        consider(limits.addressSpaceLeft, .addressSpaceLimit)
        consider(limits.dataSizeLeft, .dataSizeLimit)
        if memory == .max {
            memory = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
            memoryBound = .physicalMemory
        }
        return SystemResources(cpus: cpus, cpuBound: cpuBound, availableMemory: memory, memoryBound: memoryBound)
    }

    /// `MemAvailable:` of /proc/meminfo, in bytes.
    static func memAvailable(meminfo: String) -> Int? {
        kibibytes(field: "MemAvailable:", in: meminfo)
    }

    /// A `Name:   123 kB` line of /proc/meminfo or /proc/self/status, in bytes.
    static func kibibytes(field: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(field) {
            let words = line.dropFirst(field.count).split { $0 == " " || $0 == "\t" }
            guard let value = words.first.flatMap({ Int($0) }), value >= 0, value < Int.max >> 10 else { return nil }
            return value << 10
        }
        return nil
    }

    /// "8 CPUs", with what bounded them when it was not simply the machine.
    public var cpuDescription: String {
        let count = cpus == 1 ? "1 CPU" : "\(cpus) CPUs"
        switch cpuBound {
        case .online: return count
        case .affinity: return count + " (affinity)"
        case .cgroupQuota: return count + " (cgroup quota)"
        }
    }

    /// "4.6 GiB available", with what bounded it when it was not MemAvailable.
    public var memoryDescription: String {
        let amount = ByteSize.describe(availableMemory) + " available"
        switch memoryBound {
        case .memAvailable: return amount
        case .cgroup: return amount + " (cgroup memory limit)"
        case .addressSpaceLimit: return amount + " (address-space limit)"
        case .dataSizeLimit: return amount + " (data-size limit)"
        case .physicalMemory: return amount + " (physical memory)"
        }
    }
}

/// Byte counts for people: "1.1 GiB", "100 MiB", "512 KiB".
public enum ByteSize {
    public static func describe(_ bytes: Int) -> String {
        let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        for (shift, unit) in units where bytes >= 1 << shift {
            let value = Double(bytes) / Double(1 << shift)
            // One decimal where it says something: 4.6 GiB, but 100 MiB.
            if value >= 100 || value == value.rounded() { return "\(Int(value.rounded())) \(unit)" }
            let tenths = Int((value * 10).rounded())
            return "\(tenths / 10).\(tenths % 10) \(unit)"
        }
        return "\(bytes) bytes"
    }
}

/// The files the readings come from, below `root`: "" for the real
/// /proc and /sys, a scratch directory holding a fake tree in tests.
public struct SystemFiles: Sendable {
    public let root: String
    public init(root: String) { self.root = root }

    /// The whole of a small file, or nil when it cannot be read.
    func text(_ path: String) -> String? {
        guard let fd = try? FileDescriptor.open(forReading: root + path),
              let bytes = try? readAll(from: fd, limit: 1 << 20, what: path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first line of a one-value file (`memory.max`, `cpu.max`).
    func value(_ path: String) -> Substring? {
        text(path)?.split(separator: "\n").first
    }
}

/// The process's own resource limits, as RLIMIT_AS and RLIMIT_DATA leave them.
public struct ProcessLimits: Sendable, Equatable {
    /// Bytes of address space left under RLIMIT_AS; nil when unlimited.
    public var addressSpaceLeft: Int?
    /// Bytes of data mappings left under RLIMIT_DATA; nil when unlimited.
    public var dataSizeLeft: Int?

    public init(addressSpaceLeft: Int? = nil, dataSizeLeft: Int? = nil) {
        self.addressSpaceLeft = addressSpaceLeft
        self.dataSizeLeft = dataSizeLeft
    }

    /// `prlimit --as` limits address space, not resident memory: scrypt's
    /// mmap fails at the limit however much RAM is free, so what counts is
    /// the limit less what the process maps already (VmSize; VmData for
    /// RLIMIT_DATA, which since Linux 4.7 covers private writable mappings).
    static func current(files: SystemFiles) -> ProcessLimits {
        let status = files.text("/proc/self/status") ?? ""
        func left(_ resource: __rlimit_resource, _ field: String) -> Int? {
            var limit = rlimit()
            // RLIM_INFINITY is all ones, which Swift's import of the macro cannot spell.
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
            let cap = limit.rlim_cur > UInt(Int.max) ? Int.max : Int(limit.rlim_cur)
            let used = SystemResources.kibibytes(field: field, in: status) ?? 0
            return max(0, cap - used)
        }
        return ProcessLimits(addressSpaceLeft: left(RLIMIT_AS, "VmSize:"), dataSizeLeft: left(RLIMIT_DATA, "VmData:"))
    }
}

/// The CPUs of the process's affinity mask.
enum Affinity {
    /// nil when the mask cannot be read (more CPUs than it holds).
    static func cpuCount() -> Int? {
        let count = qb_affinity_cpu_count()
        return count > 0 ? Int(count) : nil
    }
}
