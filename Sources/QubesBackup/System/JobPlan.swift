/// How many chunks are worked on at once, and why (DESIGN.md, "Memory for
/// parallel work"): as many as the CPUs this process may use, or the
/// maximum asked for, and no more than the available memory pays for —
/// floor(available / memory per job), at least one. A version 4 job holds
/// its chunk and scrypt's 128·r·(N+p+2) bytes, 1 GiB at Qubes' usual
/// logN 20, so memory, not CPUs, is what bounds a rescue laptop.
public struct JobPlan: Sendable, Equatable, CustomStringConvertible {
    /// Jobs at once; at least 1.
    public let jobs: Int
    /// The most the user allowed (`-j`); nil: the CPUs decide.
    public let maximum: Int?
    public let resources: SystemResources
    /// What one job holds: its chunk and, in version 4, its key derivation.
    public let memoryPerJob: Int

    public init(maximum: Int?, resources: SystemResources, memoryPerJob: Int) {
        self.maximum = maximum
        self.resources = resources
        self.memoryPerJob = max(1, memoryPerJob)
        let affordable = max(1, resources.availableMemory / self.memoryPerJob)
        jobs = max(1, min(maximum ?? resources.cpus, affordable))
    }

    /// What one job of a file's chunks holds: the scrypt derivation's
    /// memory (nil for an HMAC) and the chunk. Qubes writes 100 MiB chunks;
    /// a bigger first chunk counts as it is, and nothing counts beyond the
    /// largest chunk accepted.
    public static func memoryPerJob(scryptMemory: Int?, firstChunk: Int = 0, maximumChunkSize: Int) -> Int {
        (scryptMemory ?? 0) + min(maximumChunkSize, max(ChunkSizeLimit.qubesChunkSize, firstChunk))
    }

    /// "4 jobs: 8 CPUs, 4.6 GiB available, 1.1 GiB each".
    public var description: String {
        let count = jobs == 1 ? "1 job" : "\(jobs) jobs"
        let asked = maximum.map { "at most \($0) asked" } ?? resources.cpuDescription
        return "\(count): \(asked), \(resources.memoryDescription), \(ByteSize.describe(memoryPerJob)) each"
    }
}

/// How many jobs may work at once, and who is told what was chosen: the
/// part of a `JobPlan` the caller decides.
public struct JobOptions {
    /// The most jobs at once (`-j`); nil: as many as the CPUs this process
    /// may use.
    public var maximum: Int?
    /// What the plan is made from; nil: read the machine when it is made.
    public var resources: SystemResources?
    /// Told the plan once it is made.
    public var planned: (JobPlan) -> Void
    /// Told when an allocation failure lowered the number of jobs.
    public var lowered: (Int) -> Void

    public init(maximum: Int?, resources: SystemResources? = nil,
                planned: @escaping (JobPlan) -> Void = { _ in }, lowered: @escaping (Int) -> Void = { _ in }) {
        self.maximum = maximum
        self.resources = resources
        self.planned = planned
        self.lowered = lowered
    }

    /// The plan for jobs that each hold `memoryPerJob` bytes.
    func plan(memoryPerJob: Int) -> JobPlan {
        JobPlan(maximum: maximum, resources: resources ?? .current(), memoryPerJob: memoryPerJob)
    }
}
