/// The cgroups this process belongs to, found from /proc/self/cgroup and
/// /proc/self/mountinfo, and what their limits leave of memory and CPU.
/// cgroup v2 is read at every level from the process's own group up to the
/// mount's root, since a parent's limit binds its children; a v1 hierarchy
/// (still mounted by hybrid systems for `memory` and `cpu`) where v2 has
/// no such controller.
struct Cgroups {
    private let files: SystemFiles
    /// v2: the process's group first, then each parent to the mount's root.
    private var unified: [String] = []
    private var memoryV1: String?
    private var cpuV1: String?

    init(files: SystemFiles) {
        self.files = files
        let mounts = (files.text("/proc/self/mountinfo") ?? "").split(separator: "\n").compactMap(Mount.init(line:))
        for line in (files.text("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                guard let mount = mounts.first(where: { $0.type == "cgroup2" }), let directory = mount.directory(of: path) else { continue }
                var levels = [directory]
                while let last = levels.last, last.count > mount.point.count, let slash = last.lastIndex(of: "/") {
                    levels.append(String(last[..<slash]))
                }
                unified = levels
                continue
            }
            let controllers = fields[1].split(separator: ",")
            func directory(for controller: Substring) -> String? {
                guard controllers.contains(controller) else { return nil }
                return mounts.first { $0.type == "cgroup" && $0.superOptions.contains(controller) }?.directory(of: path)
            }
            memoryV1 = memoryV1 ?? directory(for: "memory")
            cpuV1 = cpuV1 ?? directory(for: "cpu")
        }
    }

    /// What the tightest memory limit leaves: the limit less what the group
    /// is charged, not counting inactive file pages, which the kernel
    /// reclaims before it refuses an allocation or kills (a restore that
    /// has written gigabytes leaves its group full of them). nil: no limit.
    func availableMemory() -> Int? {
        var least: Int?
        func consider(limit: Int?, usage: Int?, stat: String?, inactiveKey: String) {
            guard let limit, let usage else { return }
            let inactive = stat.flatMap { Self.statValue(inactiveKey, in: $0) } ?? 0
            let left = max(0, limit - max(0, usage - inactive))
            least = min(least ?? left, left)
        }
        for directory in unified {
            let limits = [number(directory + "/memory.max"), number(directory + "/memory.high")].compactMap { $0 }
            consider(limit: limits.min(), usage: number(directory + "/memory.current"),
                     stat: files.text(directory + "/memory.stat"), inactiveKey: "inactive_file")
        }
        if let directory = memoryV1 {
            let stat = files.text(directory + "/memory.stat")
            // v1 reports "no limit" as a huge number rounded to pages, and
            // a parent's limit only in memory.stat.
            let limits = [number(directory + "/memory.limit_in_bytes"), stat.flatMap { Self.statValue("hierarchical_memory_limit", in: $0) }]
                .compactMap { $0 }.filter { $0 < 1 << 62 }
            consider(limit: limits.min(), usage: number(directory + "/memory.usage_in_bytes"), stat: stat, inactiveKey: "total_inactive_file")
        }
        return least
    }

    /// The CPUs the tightest quota pays for, rounded up; nil: no quota.
    func cpuQuota() -> Int? {
        var least: Int?
        func consider(quota: Int?, period: Int?) {
            guard let quota, let period, quota > 0, period > 0 else { return }
            let cpus = max(1, (quota + period - 1) / period)
            least = min(least ?? cpus, cpus)
        }
        for directory in unified {
            // "max 100000", or "150000 100000" for one and a half CPUs.
            guard let fields = files.value(directory + "/cpu.max")?.split(separator: " "), fields.count == 2 else { continue }
            consider(quota: Int(fields[0]), period: Int(fields[1]))
        }
        if let directory = cpuV1 {
            consider(quota: number(directory + "/cpu.cfs_quota_us"), period: number(directory + "/cpu.cfs_period_us"))
        }
        return least
    }

    /// A file holding one decimal number; nil for "max", -1 and the unreadable.
    private func number(_ path: String) -> Int? {
        files.value(path).flatMap { Int($0.split(separator: " ").first ?? "") }.flatMap { $0 >= 0 ? $0 : nil }
    }

    /// `key value` from a memory.stat.
    static func statValue(_ key: String, in stat: String) -> Int? {
        for line in stat.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == key { return Int(words[1]) }
        }
        return nil
    }
}

/// One line of /proc/self/mountinfo: `36 35 0:30 ROOT POINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER`.
private struct Mount {
    let root: String
    let point: String
    let type: String
    let superOptions: [Substring]

    init?(line: Substring) {
        let fields = line.split(separator: " ")
        guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 3 else { return nil }
        root = Self.unescape(fields[3])
        point = Self.unescape(fields[4])
        type = String(fields[dash + 1])
        superOptions = fields.count > dash + 3 ? fields[dash + 3].split(separator: ",") : []
    }

    /// The directory of cgroup `path` (as /proc/self/cgroup names it) in
    /// this mount; nil when the mount does not show it.
    func directory(of path: String) -> String? {
        let base = point == "/" ? "" : point
        if root == "/" { return path == "/" ? point : base + path }
        guard path == root || path.hasPrefix(root + "/") else { return nil }
        let below = path.dropFirst(root.count)
        return below.isEmpty ? point : base + below
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    private static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var rest = Array(field.utf8)[...]
        while let first = rest.first {
            if first == UInt8(ascii: "\\"), rest.count >= 4,
               let value = UInt8(String(decoding: rest.dropFirst().prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                rest = rest.dropFirst(4)
            } else {
                bytes.append(first)
                rest = rest.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
