import QubesBackup

/// The VM listing shared by `qb-header --vms` and `qb-restore --list`.
public enum VMTable {
    public static func lines(_ entries: [VMEntry]) -> [String] {
        let rows = [["NAME", "CLASS", "SUBDIR", "SIZE", "TEMPLATE", "LABEL", "VOLUMES"]] + entries.map { vm in
            [vm.name, vm.vmClass, vm.subdir ?? "-", vm.size.map(String.init) ?? "-", vm.template ?? "-", vm.label ?? "-", volumes(vm)]
        }
        let widths = (0..<7).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            var line = zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            return line
        }
    }
}

extension VMTable {
    /// `private.img 2147483648 root.img 10737418240`: what the backup holds
    /// for the VM and, where qubes.xml says, how large each volume is.
    static func volumes(_ vm: VMEntry) -> String {
        if vm.volumes.isEmpty { return "-" }
        return vm.volumes.map { $0.name + ".img" + ($0.size.map { " " + String($0) } ?? "") }.joined(separator: " ")
    }

    /// One JSON array of objects, one per VM.
    public static func json(_ entries: [VMEntry]) -> String {
        let objects = entries.map { vm in
            "{\"name\":\(JSON.string(vm.name)),\"class\":\(JSON.string(vm.vmClass)),\"subdir\":\(vm.subdir.map(JSON.string) ?? "null")," +
            "\"size\":\(vm.size.map(String.init) ?? "null"),\"template\":\(vm.template.map(JSON.string) ?? "null")," +
            "\"label\":\(vm.label.map(JSON.string) ?? "null"),\"included\":\(vm.included)," +
            "\"volumes\":[" + vm.volumes.map { "{\"name\":\(JSON.string($0.name)),\"size\":\($0.size.map(String.init) ?? "null")}" }.joined(separator: ",") + "]}"
        }
        return "[" + objects.joined(separator: ",") + "]"
    }
}

/// JSON text for the tools' `--json` outputs.
public enum JSON {
    public static func string(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 { out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16) }
                else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}
