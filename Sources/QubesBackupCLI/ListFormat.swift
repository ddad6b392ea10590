#if canImport(Glibc)
import Glibc
#endif
import QubesBackup

/// `tar -tv` lines: mode, owner/group, size (the column widens as GNU tar's
/// does), local time, name, link.
public struct ListFormat {
    private var width = 19

    public init() {}

    public mutating func long(_ e: TarEntry) -> String {
        let type: Character
        switch e.kind {
        case .regular: type = "-"
        case .hardLink: type = "h"
        case .symbolicLink: type = "l"
        case .characterDevice: type = "c"
        case .blockDevice: type = "b"
        case .directory: type = "d"
        case .fifo: type = "p"
        case .other: type = "?"
        }
        var modes = String(type)
        let m = e.mode
        let bits: [(UInt32, Character)] = [(0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"),
                                           (0o004, "r"), (0o002, "w"), (0o001, "x")]
        var chars = bits.map { m & $0.0 != 0 ? $0.1 : "-" }
        if m & 0o4000 != 0 { chars[2] = chars[2] == "x" ? "s" : "S" }
        if m & 0o2000 != 0 { chars[5] = chars[5] == "x" ? "s" : "S" }
        if m & 0o1000 != 0 { chars[8] = chars[8] == "x" ? "t" : "T" }
        modes += String(chars)
        let user = e.userName.isEmpty ? String(e.uid) : e.userName
        let group = e.groupName.isEmpty ? String(e.gid) : e.groupName
        let size = (e.kind == .characterDevice || e.kind == .blockDevice) ? "\(e.deviceMajor),\(e.deviceMinor)" : String(e.size)
        let pad = user.count + 1 + group.count + 1 + size.count
        if pad > width { width = pad }
        let sizeField = String(repeating: " ", count: width - pad) + size
        var line = "\(modes) \(user)/\(group) \(sizeField) \(Self.time(e.modificationTime)) \(e.name)"
        if e.kind == .symbolicLink { line += " -> " + e.linkName }
        if e.kind == .hardLink { line += " link to " + e.linkName }
        return line
    }

    private static func time(_ t: Int64) -> String {
        var seconds = time_t(t)
        var parts = tm()
        localtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min))"
    }
}
