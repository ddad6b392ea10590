/// Which VMs of a backup to restore, and where each backed-up file goes
/// (FORMAT.md §9): a file belongs to the included VM whose backup path is a
/// prefix of it (`vm3/` claims `vm3/private.img`, never `vm30/…`); dom0's
/// home (`dom0-home/USER`) goes to `dom0-home/USER/…`.
public struct RestoreSelection: Sendable {
    /// One VM to restore and the directory (below the target) it goes to.
    public struct Destination: Sendable, Equatable {
        public let vm: VMEntry
        /// `work` for the VM work, `dom0-home` for dom0's home.
        public let directoryName: String
        /// Components of the VM's backup path, removed from inner names:
        /// `vm3/private.img` → `private.img`. dom0's home keeps its user name.
        public let stripComponents: Int
    }

    /// Every VM included in the backup, in qubes.xml order.
    public let included: [VMEntry]
    /// The VMs chosen, in qubes.xml order.
    public let selected: [Destination]
    /// Without a qubes.xml: VMs are known only by their backup directory
    /// (`vm3`), and `names` are directory names.
    public let byDirectory: Bool
    private let names: [String]
    private let dom0Home: Bool

    /// For a backup whose qubes.xml is missing: every top directory of the
    /// stream is a VM named after it (`vm3`), dom0's home is `dom0-home`.
    public init(directoryNames names: [String], dom0Home: Bool) {
        included = []
        selected = []
        byDirectory = true
        self.names = names
        self.dom0Home = dom0Home
    }

    /// `names` empty selects every included VM except dom0; dom0's home is
    /// selected only with `dom0Home`. An unknown or excluded name is a usage
    /// error that lists what the backup holds.
    public init(vms: [VMEntry], names: [String], dom0Home: Bool) throws(QBError) {
        var included = vms.filter { $0.included && $0.subdir != nil }
        // R2/R3 files often carry no dom0 element; the home is then known
        // only by its `dom0-home/` members (FORMAT.md §9.1).
        if !included.contains(where: Self.isDom0) {
            included.append(VMEntry(name: "dom0", vmClass: "AdminVM", subdir: "dom0-home/", size: nil, template: nil,
                                    label: nil, included: true))
        }
        self.included = included
        byDirectory = false
        self.names = names
        self.dom0Home = dom0Home
        let available = included.filter { !Self.isDom0($0) }.map(\.name)
        for name in names where !available.contains(name) {
            if name == "dom0" {
                throw QBError(.usage, "dom0 is not a VM to restore", subject: name, hint: "restore dom0's home with --dom0-home")
            }
            throw QBError(.usage, "no such VM in the backup", subject: name,
                          hint: available.isEmpty ? "the backup holds no VMs" : "it holds: " + available.joined(separator: ", "))
        }
        var chosen: [Destination] = []
        for vm in included {
            let wanted = Self.isDom0(vm) ? dom0Home : (names.isEmpty || names.contains(vm.name))
            guard wanted, let subdir = vm.subdir else { continue }
            let directory = Self.isDom0(vm) ? "dom0-home" : vm.name
            try Self.checkDirectoryName(directory, vm: vm)
            let strip = try MemberPath(Array(subdir.utf8), what: "backup path").components.count
            guard !chosen.contains(where: { $0.directoryName == directory }) else {
                throw QBError(.unsafe, "two VMs would be restored into the same directory", subject: directory)
            }
            chosen.append(Destination(vm: vm, directoryName: directory, stripComponents: strip))
        }
        selected = chosen
    }

    static func isDom0(_ vm: VMEntry) -> Bool { vm.vmClass == "AdminVM" }

    /// Qubes' own rule for VM names: a letter, then letters, digits, `_`, `.`
    /// or `-`, at most 31 in all. Anything else cannot come from Qubes and
    /// must not become a directory name.
    static func checkDirectoryName(_ name: String, vm: VMEntry) throws(QBError) {
        let bytes = Array(name.utf8)
        let valid = !bytes.isEmpty && bytes.count <= 31 && bytes.enumerated().allSatisfy { i, b in
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): return true
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"): return i > 0
            default: return false
            }
        }
        guard valid else {
            throw QBError(.unsafe, "refusing VM name that Qubes could not have written", subject: printable(Array(vm.name.utf8)),
                          hint: "tampered qubes.xml")
        }
    }

    /// The included VM a backed-up file belongs to, if any.
    public func owner(of file: String) -> VMEntry? {
        if byDirectory {
            guard let top = file.split(separator: "/").first, top.count < file.count else { return nil }
            let isHome = top == "dom0-home"
            return VMEntry(name: isHome ? "dom0" : String(top), vmClass: isHome ? "AdminVM" : "unknown", subdir: top + "/",
                           size: nil, template: nil, label: nil, included: true)
        }
        return included.first { vm in vm.subdir.map { (file + "/").hasPrefix($0) } ?? false }
    }

    /// Where a file is restored, if its VM was selected.
    public func destination(of file: String) -> Destination? {
        guard let vm = owner(of: file) else { return nil }
        guard byDirectory else { return selected.first { $0.vm == vm } }
        if Self.isDom0(vm) {
            return dom0Home ? Destination(vm: vm, directoryName: "dom0-home", stripComponents: 1) : nil
        }
        guard names.isEmpty || names.contains(vm.name) else { return nil }
        guard (try? Self.checkDirectoryName(vm.name, vm: vm)) != nil else { return nil }
        return Destination(vm: vm, directoryName: vm.name, stripComponents: 1)
    }

    /// Where a file goes when it is a selected VM's private volume
    /// (`SUBDIR/private.img`, restored to `VM/private.img`): the image
    /// whose filesystem step 8 reads.
    public func privateVolumeDestination(of file: String) -> Destination? {
        volumeDestination(of: file, named: "private")
    }

    /// Where `file` goes when it is the volume `volume` (`private`, `root`)
    /// of a selected VM: `vm3/root.img` for `root`.
    public func volumeDestination(of file: String, named volume: String) -> Destination? {
        guard file.split(separator: "/").count == 2, file.hasSuffix("/\(volume).img"),
              let destination = destination(of: file), destination.directoryName != "dom0-home" else { return nil }
        return destination
    }

    /// The VMs asked for by name (or dom0's home) that `files` do not touch.
    public func missing(among files: [String]) -> [String] {
        let seen = Set(files.compactMap { destination(of: $0)?.vm.name })
        var wanted = byDirectory ? names : selected.map(\.vm.name)
        if byDirectory && dom0Home { wanted.append("dom0") }
        return wanted.filter { !seen.contains($0) }
    }
}
