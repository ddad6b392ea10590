import Foundation
import Synchronization
import Testing
import QBTestSupport
@testable import QubesBackup

/// How many jobs, and why (issue 24): the arithmetic of `JobPlan`, the
/// readings of `SystemResources` from a fake /proc and cgroup tree, and the
/// slots that lose one job each time an allocation is refused.
@Suite struct JobPlanTests {
    static let gib = 1 << 30, mib = 1 << 20

    @Test(arguments: [
        // cpus, maximum (-j), available, per job → jobs
        (8, nil, 4 * gib + 600 * mib, gib + 100 * mib, 4),
        (16, nil, 8 * gib, 2 * gib + 100 * mib, 3),
        (2, nil, 20 * gib, gib + 100 * mib, 2),
        (2, 8, 3 * gib, gib + 100 * mib, 2),
        (2, 1, 20 * gib, gib + 100 * mib, 1),
        (4, nil, 500 * mib, gib + 100 * mib, 1),              // at least one
        (4, nil, 0, gib, 1),
    ] as [(Int, Int?, Int, Int, Int)])
    func jobs(cpus: Int, maximum: Int?, available: Int, perJob: Int, expected: Int) {
        let plan = JobPlan(maximum: maximum, resources: SystemResources(cpus: cpus, availableMemory: available), memoryPerJob: perJob)
        #expect(plan.jobs == expected)
    }

    @Test func theIssuesExample() {
        let plan = JobPlan(maximum: nil, resources: SystemResources(cpus: 8, availableMemory: 4_939_212_390),
                           memoryPerJob: JobPlan.memoryPerJob(scryptMemory: 128 * 8 * ((1 << 20) + 3), maximumChunkSize: 1 << 30))
        #expect(plan.jobs == 4)
        #expect(plan.description == "4 jobs: 8 CPUs, 4.6 GiB available, 1.1 GiB each")
        let asked = JobPlan(maximum: 1, resources: SystemResources(cpus: 2, cpuBound: .affinity, availableMemory: 3 << 30, memoryBound: .addressSpaceLimit),
                            memoryPerJob: 100 << 20)
        #expect(asked.description == "1 job: at most 1 asked, 3 GiB available (address-space limit), 100 MiB each")
    }

    @Test func memoryPerJob() {
        let scrypt = 128 * 8 * ((1 << 20) + 3)
        #expect(JobPlan.memoryPerJob(scryptMemory: scrypt, maximumChunkSize: 1 << 30) == scrypt + (100 << 20))
        // A bigger first chunk counts as it is; nothing beyond --max-size.
        #expect(JobPlan.memoryPerJob(scryptMemory: nil, firstChunk: 300 << 20, maximumChunkSize: 1 << 30) == 300 << 20)
        #expect(JobPlan.memoryPerJob(scryptMemory: nil, firstChunk: 10, maximumChunkSize: 1 << 20) == 1 << 20)
    }

    @Test(arguments: [(0, "0 bytes"), (512, "512 bytes"), (1 << 20, "1 MiB"), (101 << 20, "101 MiB"), (1_180_000_000, "1.1 GiB"),
                      (3 << 30, "3 GiB"), (4_939_212_390, "4.6 GiB"), (975 << 20, "975 MiB"), (1536 << 10, "1.5 MiB")])
    func byteSizes(bytes: Int, text: String) {
        #expect(ByteSize.describe(bytes) == text)
    }

    // MARK: - readings

    /// A fake /proc and /sys below a scratch directory.
    final class Tree {
        let dir: ScratchDirectory
        init() throws { dir = try ScratchDirectory() }
        var files: SystemFiles { SystemFiles(root: dir.url.path) }
        func write(_ path: String, _ text: String) throws {
            let url = dir.url.appendingPathComponent(String(path.dropFirst()))
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: false, encoding: .utf8)
        }
    }

    static let meminfo = "MemTotal:       24683772 kB\nMemFree:         1000000 kB\nMemAvailable:   20971520 kB\n"

    @Test func memAvailableAlone() throws {
        let tree = try Tree()
        try tree.write("/proc/meminfo", Self.meminfo)
        let r = SystemResources.read(files: tree.files, affinityCPUs: 2, limits: ProcessLimits())
        #expect(r.availableMemory == 20 * Self.gib)
        #expect(r.memoryBound == .memAvailable)
        #expect(r.memoryDescription == "20 GiB available")
    }

    /// cgroup v2: a parent's memory.max binds; inactive file pages count as
    /// available; cpu.max rounds up.
    @Test func cgroupV2Nested() throws {
        let tree = try Tree()
        try tree.write("/proc/meminfo", Self.meminfo)
        try tree.write("/proc/self/cgroup", "0::/system.slice/qb.service\n")
        try tree.write("/proc/self/mountinfo", """
            22 1 0:21 / /proc rw,nosuid - proc proc rw
            30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
            """)
        let base = "/sys/fs/cgroup/system.slice"
        try tree.write(base + "/memory.max", "max\n")
        try tree.write(base + "/memory.current", "1000\n")
        try tree.write(base + "/qb.service/memory.max", "\(4 * Self.gib)\n")
        try tree.write(base + "/qb.service/memory.high", "max\n")
        try tree.write(base + "/qb.service/memory.current", "\(Self.gib)\n")
        try tree.write(base + "/qb.service/memory.stat", "anon 1000\ninactive_file \(512 * Self.mib)\nactive_file 7\n")
        try tree.write(base + "/qb.service/cpu.max", "150000 100000\n")
        try tree.write(base + "/cpu.max", "max 100000\n")
        let r = SystemResources.read(files: tree.files, affinityCPUs: 8, limits: ProcessLimits())
        #expect(r.availableMemory == 4 * Self.gib - (Self.gib - 512 * Self.mib))
        #expect(r.memoryBound == .cgroup)
        #expect(r.cpus == min(2, max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
        // The parent's limit, lower, wins.
        try tree.write(base + "/memory.max", "\(2 * Self.gib)\n")
        #expect(SystemResources.read(files: tree.files, affinityCPUs: 8, limits: ProcessLimits()).availableMemory == 2 * Self.gib - 1000)
    }

    /// A container's cgroup namespace: the mount's root is the group itself.
    @Test func cgroupV2MountedBelowItsRoot() throws {
        let tree = try Tree()
        try tree.write("/proc/meminfo", Self.meminfo)
        try tree.write("/proc/self/cgroup", "0::/docker/abc\n")
        try tree.write("/proc/self/mountinfo", "30 25 0:26 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n")
        try tree.write("/sys/fs/cgroup/memory.max", "\(3 * Self.gib)\n")
        try tree.write("/sys/fs/cgroup/memory.current", "0\n")
        let r = SystemResources.read(files: tree.files, affinityCPUs: nil, limits: ProcessLimits())
        #expect(r.availableMemory == 3 * Self.gib)
        #expect(r.memoryDescription == "3 GiB available (cgroup memory limit)")
    }

    /// cgroup v1 (hybrid hierarchies, this machine kind): memory and cpu
    /// hierarchies of their own; "no limit" is a huge number.
    @Test func cgroupV1() throws {
        let tree = try Tree()
        try tree.write("/proc/meminfo", Self.meminfo)
        try tree.write("/proc/self/cgroup", "4:memory:/job\n1:cpu,cpuacct:/job\n0::/\n")
        try tree.write("/proc/self/mountinfo", """
            40 30 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
            41 30 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
            42 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            """)
        try tree.write("/sys/fs/cgroup/memory/job/memory.limit_in_bytes", "9223372036854771712\n")
        try tree.write("/sys/fs/cgroup/memory/job/memory.usage_in_bytes", "\(Self.gib)\n")
        try tree.write("/sys/fs/cgroup/memory/job/memory.stat", "hierarchical_memory_limit \(5 * Self.gib)\ntotal_inactive_file 0\n")
        try tree.write("/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "100000\n")
        try tree.write("/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n")
        let r = SystemResources.read(files: tree.files, affinityCPUs: 4, limits: ProcessLimits())
        #expect(r.availableMemory == 4 * Self.gib)
        #expect(r.memoryBound == .cgroup)
        #expect(r.cpus == 1 && r.cpuBound == .cgroupQuota)
        #expect(r.cpuDescription == "1 CPU (cgroup quota)")
    }

    /// RLIMIT_AS less what is mapped: what `prlimit --as` leaves.
    @Test func addressSpaceLimit() throws {
        let tree = try Tree()
        try tree.write("/proc/meminfo", Self.meminfo)
        let r = SystemResources.read(files: tree.files, affinityCPUs: 1, limits: ProcessLimits(addressSpaceLeft: 2 * Self.gib, dataSizeLeft: 3 * Self.gib))
        #expect(r.availableMemory == 2 * Self.gib && r.memoryBound == .addressSpaceLimit)
        #expect(r.cpus == 1)
        // The process's own reading: /proc/self/status has VmSize in kB, after a tab.
        #expect(SystemResources.kibibytes(field: "VmSize:", in: "Name:\tqb\nVmSize:\t  123456 kB\n") == 123_456 << 10)
    }

    /// Nothing readable: physical memory, the CPUs online.
    @Test func nothingToRead() throws {
        let tree = try Tree()
        let r = SystemResources.read(files: tree.files, affinityCPUs: nil, limits: ProcessLimits())
        #expect(r.memoryBound == .physicalMemory && r.availableMemory > 0)
        #expect(r.cpuBound == .online)
    }

    // MARK: - slots

    @Test func aJobAloneCannotGiveWay() {
        let slots = JobSlots(limit: 2)
        slots.acquire()
        #expect(!slots.giveWayAfterShortage())
        #expect(slots.limit == 2)
        slots.release()
    }

    /// Refused while another job runs: one slot fewer for good, and the job
    /// goes on once the other has finished.
    @Test func aJobGivesWayToARunningOne() throws {
        let slots = JobSlots(limit: 3)
        slots.acquire()                       // the job that will be refused
        let other = try WorkerThread { () throws(QBError) -> Int in
            slots.acquire()
            usleep(100_000)
            slots.release()
            return 1
        }
        while true {
            // Wait until the other job holds its slot.
            if slots.limit == 3, slots.running == 2 { break }
            usleep(1000)
        }
        #expect(slots.giveWayAfterShortage())
        #expect(slots.limit == 2)
        #expect(try other.join().get() == 1)
        slots.release()
        // Two slots left: two can be held at once, as before the third went.
        slots.acquire(); slots.acquire()
        slots.release(); slots.release()
    }

    final class Events: Sendable {
        let list = Mutex<[String]>([])
        func add(_ event: String) { list.withLock { $0.append(event) } }
        var all: [String] { list.withLock { $0 } }
    }

    /// The memory budget holds a job back while others hold its room...
    @Test func theBudgetHoldsABiggerJobBack() throws {
        let slots = JobSlots(limit: 2, memoryBudget: 100)
        let events = Events()
        slots.acquire(bytes: 60)
        let other = try WorkerThread { () throws(QBError) -> Int in
            slots.acquire(bytes: 60)
            events.add("other runs")
            slots.release(bytes: 60)
            return 0
        }
        usleep(100_000)
        events.add("first releases")
        slots.release(bytes: 60)
        _ = other.join()
        #expect(events.all == ["first releases", "other runs"])
    }

    /// ...but a job alone always runs: the scrypt limits already keep it
    /// within what is available.
    @Test func aJobAloneRunsWhateverItHolds() {
        let slots = JobSlots(limit: 2, memoryBudget: 10)
        slots.acquire(bytes: 1000)
        #expect(slots.running == 1)
        slots.release(bytes: 1000)
    }

    /// An allocation refused while another job runs is tried again once that
    /// job has finished, with one job fewer from then on; refused alone, it
    /// is tried once more and then fails as what it is.
    @Test func aRefusedAllocationIsTriedAgainAfterARunningJob() throws {
        let slots = JobSlots(limit: 2)
        let events = Events()
        slots.acquire()
        let other = try WorkerThread { () throws(QBError) -> Int in
            slots.acquire()
            usleep(100_000)
            events.add("other finishes")
            slots.release()
            return 0
        }
        while slots.running < 2 { usleep(1000) }
        var attempts = 0
        let value = try JobSlots.retryingShortage(slots) { () throws(QBError) -> Int in
            attempts += 1
            events.add("attempt \(attempts)")
            if attempts == 1 { throw QBError(.outOfMemory, "refused") }
            return 7
        }
        slots.release()
        _ = other.join()
        #expect(value == 7)
        #expect(events.all == ["attempt 1", "other finishes", "attempt 2"])
        #expect(slots.limit == 1)

        var alone = 0
        #expect(throws: QBError.self) {
            try JobSlots.retryingShortage(JobSlots(limit: 4)) { () throws(QBError) -> Int in
                alone += 1
                throw QBError(.outOfMemory, "refused")
            }
        }
        #expect(alone == 2)
        var other2 = 0
        #expect(throws: QBError.self) {
            try JobSlots.retryingShortage(nil) { () throws(QBError) -> Int in
                other2 += 1
                throw QBError(.authentication, "not memory")
            }
        }
        #expect(other2 == 1)
    }
}
