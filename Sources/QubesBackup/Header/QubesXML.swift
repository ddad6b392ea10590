/// One domain of a `qubes.xml`, as far as a restore cares (FORMAT.md §9).
public struct VMEntry: Sendable, Equatable {
    public var name: String
    /// `AppVM`, `TemplateVM`, `StandaloneVM`, `AdminVM`, `DispVM`, …
    public var vmClass: String
    /// The member prefix of its files in the backup, always with a trailing
    /// slash (`vm3/`); nil when the VM is not in the backup.
    public var subdir: String?
    /// Qubes' size estimate of its backed-up data, in bytes.
    public var size: Int64?
    public var template: String?
    /// A colour name.
    public var label: String?
    public var included: Bool
    /// The volume images the backup holds for it, as `NAME.img` in its
    /// subdirectory: from R4's volume-config (the volumes saved on stop,
    /// with their sizes), else from its class as the writers choose them.
    public var volumes: [VMVolume] = []
}

/// One volume image of a VM in the backup.
public struct VMVolume: Sendable, Equatable {
    /// `private`, `root`: the image is `NAME.img`.
    public var name: String
    /// The volume's size in bytes, where qubes.xml gives it.
    public var size: Int64?
}

/// The VM list of a `qubes.xml` of any Qubes release: R1–R3 (`QubesVmCollection`,
/// "core2") and R4 (`qubes`/`domains`, "core3").
public enum QubesXML {
    public static func parseVMs(_ bytes: [UInt8]) throws(QBError) -> [VMEntry] {
        let root = try XMLDocument.parse(bytes)
        switch root.name {
        case "QubesVmCollection": return core2(root)
        case "qubes": return try core3(root)
        default:
            throw QBError(.unsupported, "not a qubes.xml: root element <\(root.name)>", subject: "qubes.xml")
        }
    }

    /// The seven element names the R3 restore looks at; others are ignored as
    /// Qubes ignores them.
    static let core2Classes: Set<String> = ["QubesTemplateVm", "QubesTemplateHVm", "QubesAdminVm", "QubesAppVm",
                                            "QubesHVm", "QubesNetVm", "QubesProxyVm"]

    static func core2(_ root: XMLElement) -> [VMEntry] {
        let elements = root.children.filter { core2Classes.contains($0.name) }
        var nameByQID: [String: String] = [:]
        for e in elements { if let qid = e.attribute("qid"), let name = e.attribute("name") { nameByQID[qid] = name } }
        return elements.map { e in
            let templateQID = e.attribute("template_qid")
            let vmClass: String
            if e.attribute("qid") == "0" { vmClass = "AdminVM" }
            else if e.name == "QubesTemplateVm" || e.name == "QubesTemplateHVm" { vmClass = "TemplateVM" }
            else if templateQID == nil || templateQID!.lowercased() == "none" { vmClass = "StandaloneVM" }
            else { vmClass = "AppVM" }
            // Exactly "True": that is what the R3 restore compares with.
            let included = e.attribute("backup_content") == "True"
            return VMEntry(
                name: e.attribute("name") ?? (vmClass == "AdminVM" ? "dom0" : ""),
                vmClass: vmClass,
                subdir: included ? e.attribute("backup_path").map(withSlash) : nil,
                size: e.attribute("backup_size").flatMap { Int64($0) },
                template: vmClass == "AppVM" ? templateQID.flatMap { nameByQID[$0] } : nil,
                label: e.attribute("label") ?? "red",
                included: included,
                volumes: included ? core2Volumes(vmClass) : [])
        }
    }

    /// What the R3 writer (qubes-core-admin release3, core/backup.py,
    /// backup_prepare) stores as files of their own: private.img for every
    /// VM, root.img too for an updateable one that is not a template (a
    /// standalone VM). A template goes as its whole directory in one
    /// archive, so no image is a file of its own there.
    static func core2Volumes(_ vmClass: String) -> [VMVolume] {
        switch vmClass {
        case "AdminVM", "TemplateVM": return []
        case "StandaloneVM": return [VMVolume(name: "private"), VMVolume(name: "root")]
        default: return [VMVolume(name: "private")]
        }
    }

    /// R4 without volume-config (older or hand-made files): what R4 saves
    /// on stop by default, private for every VM, root too for a template or
    /// a standalone VM, whose root is its own.
    static func core3DefaultVolumes(_ vmClass: String) -> [VMVolume] {
        switch vmClass {
        case "AdminVM": return []
        case "TemplateVM", "StandaloneVM": return [VMVolume(name: "private"), VMVolume(name: "root")]
        default: return [VMVolume(name: "private")]
        }
    }

    static func core3(_ root: XMLElement) throws(QBError) -> [VMEntry] {
        var colourByID: [String: String] = [:]
        for label in root.child(named: "labels")?.children(named: "label") ?? [] {
            if let id = label.attribute("id") { colourByID[id] = label.text }
        }
        guard let domains = root.child(named: "domains") else {
            throw QBError(.malformed, "qubes.xml has no <domains>", subject: "qubes.xml")
        }
        return domains.children(named: "domain").map { d in
            var properties: [String: String] = [:]
            for p in d.child(named: "properties")?.children(named: "property") ?? [] {
                if let n = p.attribute("name") { properties[n] = p.text }
            }
            var features: [String: String] = [:]
            for f in d.child(named: "features")?.children(named: "feature") ?? [] {
                if let n = f.attribute("name") { features[n] = f.text }
            }
            let vmClass = d.attribute("class") ?? "AppVM"
            // The writer stores booleans as "1" or empty (FORMAT.md §9.2).
            let included = !(features["backup-content"] ?? "").isEmpty
            let label = properties["label"].map { colourByID[$0] ?? $0 }
            // R4 backs up the volumes saved on stop (private; root of a
            // template or standalone VM), as NAME.img.
            var volumes: [VMVolume] = []
            if let config = d.child(named: "volume-config") {
                for v in config.children(named: "volume") where v.attribute("save_on_stop") == "True" {
                    guard let name = v.attribute("name") else { continue }
                    volumes.append(VMVolume(name: name, size: v.attribute("size").flatMap { Int64($0) }))
                }
            } else {
                volumes = core3DefaultVolumes(vmClass)
            }
            return VMEntry(
                name: properties["name"] ?? (vmClass == "AdminVM" ? "dom0" : ""),
                vmClass: vmClass,
                subdir: included ? features["backup-path"].map(withSlash) : nil,
                size: features["backup-size"].flatMap { Int64($0) },
                template: properties["template"],
                label: label,
                included: included,
                volumes: included ? volumes : [])
        }
    }

    /// Member prefixes end in a slash so that `vm5` never claims `vm50/…`.
    /// dom0's home is stored as `dom0-home/USER.NNN`, so its prefix is the
    /// `dom0-home/` directory, whatever user name the path carries.
    private static func withSlash(_ path: String) -> String {
        if path == "dom0-home" || path.hasPrefix("dom0-home/") { return "dom0-home/" }
        return path.hasSuffix("/") ? path : path + "/"
    }
}
