import ArgumentParser
import QubesBackup
import QubesBackupCLI

struct QBHeader: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-header",
        abstract: "Validate and print a Qubes backup-header, or list the VMs of a qubes.xml.",
        discussion: """
        Parses backup-header exactly as strictly as Qubes' restore: ASCII, key=value, \
        Qubes' character set, no duplicate keys, version 2-4, required fields, and a \
        compression-filter from the allow-list (\(CompressionFilter.allowList)) — anything \
        else is refused, never run (Qubes Security Bulletin 51).

        With --verify, nothing is printed unless the header is authentic.

        Examples:
          # steps 2-3 of the emergency restore: authenticate and read the header
          eval "$(qb-header --verify backup-header.hmac --passphrase env:P \\
            --shell backup-header)"
          # step 5, find the VM: qubes.xml of a v3 backup, once authenticated
          qb-decrypt --passphrase env:P < qubes.xml.000 \\
            | qb-decompress -f "$QB_COMPRESSION_FILTER" | qb-untar -O qubes.xml \\
            | qb-header --vms
        """,
        version: qbVersion)

    @Option(help: ArgumentHelp("Authenticate the header with this .hmac file (text or v4 scrypt envelope) first.", valueName: "hmacfile"))
    var verify: String?

    @OptionGroup var passphrase: PassphraseOptions

    @OptionGroup var maxMemory: MaxMemoryOption<MaxMemoryHelp>
    enum MaxMemoryHelp: OptionHelp { static let text = "With --verify and a v4 header: largest scrypt memory, 128·r·(N+p+2), to accept, in bytes (default: the memory available)." }

    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Print QB_KEY='value' assignments that are safe to eval.") var shell = false
    @Option(help: ArgumentHelp("Print the value of one key.", valueName: "key")) var get: String?

    @Flag(help: "Treat the input as qubes.xml and list the VMs in the backup.") var vms = false
    @Flag(help: "With --vms, list every VM, also those not in the backup.") var all = false

    @Argument(help: ArgumentHelp("backup-header (or qubes.xml with --vms); standard input when absent or -.", valueName: "file"))
    var file: String?

    func validate() throws {
        if [json, shell, get != nil].filter({ $0 }).count > 1 { throw ValidationError("choose one of --json, --shell, --get") }
        if vms && (shell || get != nil || verify != nil) { throw ValidationError("--vms takes only --all and --json") }
        if all && !vms { throw ValidationError("--all goes with --vms") }
    }

    func run() throws {
        if vms { return try listVMs() }
        let bytes = try readAll(from: FileDescriptor.input(file), limit: BackupHeader.maximumSize, what: "backup-header")
        var method: AuthenticationMethod?
        if let verify {
            let secret = try passphrase.read()
            let expected = try readAll(from: FileDescriptor.input(verify), limit: DigestLine.maximumFileSize, what: ".hmac file")
            method = try HeaderAuthentication.verify(header: bytes, hmacFile: expected, passphrase: secret, limits: maxMemory.limits)
        }
        let header = try BackupHeader(parsing: bytes)
        if let method { try HeaderAuthentication.checkConsistency(header, method: method) }
        else { Diagnostics.warning("backup-header is not authenticated; use --verify backup-header.hmac") }
        for key in header.ignoredKeys { Diagnostics.warning("unknown header key '\(key)' ignored") }
        for warning in header.warnings { Diagnostics.warning(warning) }

        if let get {
            guard BackupHeader.knownKeys.contains(get) else { throw ValidationError("unknown key '\(get)'; known: \(BackupHeader.knownKeys.joined(separator: ", "))") }
            guard let value = header.value(of: get) else { throw QBError(.malformed, "backup-header has no \(get)", subject: file ?? "backup-header") }
            try Output.line(value)
        } else if shell {
            for (key, value) in header.normalizedFields {
                let name = "QB_" + String(key.uppercased().map { $0 == "-" ? "_" : $0 })
                try Output.line("\(name)='\(value)'")
            }
            try Output.line("QB_AUTHENTICATED='\(method.map(\.description) ?? "")'")
        } else if json {
            var members = header.normalizedFields.map { key, value in
                "\(JSON.string(key)):" + (key == "version" || value == "true" || value == "false" ? value : JSON.string(value))
            }
            members.append("\"authenticated\":" + (method.map { JSON.string($0.description) } ?? "null"))
            try Output.line("{" + members.joined(separator: ",") + "}")
        } else {
            for field in header.fields { try Output.line("\(field.key)=\(field.value)") }
        }
    }

    func listVMs() throws {
        let bytes = try readAll(from: FileDescriptor.input(file), limit: XMLDocument.maximumSize, what: "qubes.xml")
        let entries = try QubesXML.parseVMs(bytes).filter { all || $0.included }
        if json { return try Output.line(VMTable.json(entries)) }
        for line in VMTable.lines(entries) { try Output.line(line) }
    }
}
