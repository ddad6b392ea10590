/// What qubes.xml says must be in a backup, against what was found
/// (FORMAT.md §3.4: nothing in the format counts the files, so a backup cut
/// at a file boundary is otherwise a whole, authenticated backup of fewer
/// files). Each included VM must bring its volume images (`VMEntry.volumes`:
/// R4's volume-config or the writer's rule for the class) and dom0, when
/// qubes.xml says its home was backed up, `dom0-home/USER`. What qubes.xml
/// cannot tell (a VM's firewall.xml, its appmenus list, a template
/// directory's contents) is not required.
public enum BackupCompleteness {
    /// One line per VM of `vms` that lacks something: no file at all, or
    /// not all of its volume images.
    public static func missing(vms: [VMEntry], files: [String]) -> [String] {
        let present = Set(files)
        var lines: [String] = []
        for vm in vms where vm.included && vm.vmClass != "AdminVM" {
            guard let subdir = vm.subdir else { continue }
            guard files.contains(where: { $0.hasPrefix(subdir) }) else {
                lines.append("truncated backup: VM '\(vm.name)' (\(subdir)) has no files, though qubes.xml lists it")
                continue
            }
            let lacking = vm.volumes.map { $0.name + ".img" }.filter { !present.contains(subdir + $0) }
            if !lacking.isEmpty {
                lines.append("truncated backup: VM '\(vm.name)' (\(subdir)) has no \(lacking.joined(separator: " and "))")
            }
        }
        return lines
    }

    /// Whether qubes.xml says dom0's home was backed up and no
    /// `dom0-home/…` file came.
    public static func lacksDom0Home(vms: [VMEntry], files: [String]) -> Bool {
        guard vms.contains(where: { $0.vmClass == "AdminVM" && $0.included }) else { return false }
        return !files.contains { $0.hasPrefix("dom0-home/") }
    }
}
