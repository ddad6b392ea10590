#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import QubesBackup
import QubesBackupCLI

@main
struct QBRestore: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-restore",
        abstract: "Restore VMs from a Qubes OS backup in one streaming pass.",
        discussion: """
        qb-restore reads the backup once, from its start: it authenticates and \
        validates the header, authenticates and reads qubes.xml, then streams \
        every file of the chosen VMs through authentication, decryption, \
        decompression and a confined, sparse extraction into DIR/NAME/ — no \
        temporary disk, memory bounded by a few chunks. dom0's home goes to \
        DIR/dom0-home/USER/ with --dom0-home. The backup may be a pipe.

        Without VM names, every VM in the backup is restored (dom0's home only \
        with --dom0-home). A VM's directory must not exist yet. Each file is \
        written under a temporary name and renamed when complete, so a failed \
        restore never leaves a file that looks whole.

        It is built from the same library stages as qb-untar, qb-hmac, \
        qb-decrypt and qb-decompress; --explain prints the pipelines of those \
        tools that do the same job, and runs nothing.

        Examples:
          qb-restore --list backup.qubes
          qb-restore -C restored --passphrase env:P backup.qubes work vault
          ssh nas cat backup.qubes | qb-restore --passphrase file:pass.txt -C restored - work
          qb-restore --verify-only --passphrase env:P backup.qubes
          qb-restore --explain --passphrase env:P backup.qubes work > restore-work.sh
        """)

    @Flag(name: [.customShort("l"), .customLong("list")], help: "List the VMs in the backup (after authenticating the header and qubes.xml) and stop.")
    var list = false

    @Flag(help: "Authenticate and check every file of the backup, to the end of every archive; write nothing.")
    var verifyOnly = false

    @Flag(help: "Print the small-tool pipelines (qb-untar, qb-hmac, qb-decrypt, qb-decompress) that restore the same files, and run nothing.")
    var explain = false

    @Flag(help: "Also restore dom0's home directory, into DIR/dom0-home.")
    var dom0Home = false

    @Flag(help: "With --list: JSON output.")
    var json = false

    @Option(name: [.customShort("C"), .customLong("directory")], help: ArgumentHelp("Restore into this directory, which must exist (default: the current one).", valueName: "dir"))
    var directory = "."

    @Option(name: .shortAndLong, help: ArgumentHelp("Chunks authenticated (v4: keys derived) at once (default: the number of CPUs). Each v4 derivation takes about 1 GiB.", valueName: "n"))
    var jobs = ProcessorCount.online

    @Option(help: ArgumentHelp("Largest chunk to hold in memory while it is authenticated, in bytes (Qubes writes 100 MiB).", valueName: "bytes"))
    var maxSize = 1 << 30

    @Option(help: ArgumentHelp("v4: largest scrypt memory, 128·r·(N+p+2), to accept, in bytes; the default 2 GiB covers Qubes' parameters.", valueName: "bytes"))
    var maxMemory = ScryptLimits.default.maximumMemory

    @Option(help: ArgumentHelp("Most regions the sparse map of a restored file may list (default 1000000); raise it only for a backup you trust.", valueName: "n"))
    var maxSparseEntries = TarLimits.default.maxSparseEntries

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Name each file on standard error as it is finished.")
    var verbose = false

    @Flag(help: "No progress line, even on a terminal.")
    var noProgress = false

    @OptionGroup var passphrase: PassphraseOptions

    @Argument(help: ArgumentHelp("The backup file, or - for standard input.", valueName: "backup"))
    var backup: String

    @Argument(help: ArgumentHelp("The VMs to restore (default: all).", valueName: "vm"))
    var vms: [String] = []

    func validate() throws {
        guard [list, verifyOnly, explain].filter({ $0 }).count <= 1 else {
            throw ValidationError("choose at most one of --list, --verify-only and --explain")
        }
        if json && !list { throw ValidationError("--json goes with --list") }
        if list && (!vms.isEmpty || dom0Home) { throw ValidationError("--list takes no VM names and no --dom0-home") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if maxSparseEntries < 1 { throw ValidationError("--max-sparse-entries must be at least 1") }
    }

    func run() throws {
        let input = try FileDescriptor.input(backup)
        if input.rawValue == 0 && input.isTerminal {
            throw QBError(.usage, "the backup would be read from a terminal", hint: "give a file, or pipe the backup in")
        }
        let secret = try passphrase.read()
        let meter = noProgress || list || explain ? nil : ProgressMeter(total: input.regularFileSize)
        defer { meter?.end() }
        let report = Report(meter: meter, verbose: verbose)
        let options = RestoreOptions(parallelism: jobs, maximumChunkSize: maxSize,
                                     scryptLimits: ScryptLimits(maximumMemory: maxMemory))
        let restore = BackupRestore(source: MeteredSource(input, meter: meter), passphrase: secret, options: options, observer: report)

        let header = try restore.readHeader()
        let vmList = try restore.readVMList()
        if list {
            guard let vmList else { throw QBError(.malformed, "the backup has no qubes.xml to list VMs from", subject: backup) }
            let included = vmList.filter(\.included)
            if json { return try Output.line(VMTable.json(included)) }
            try Output.line("backup-id \(header.backupID ?? "-") (version \(header.version)): check that this is the backup you expect")
            for line in VMTable.lines(included) { try Output.line(line) }
            return
        }
        let selection = try vmList.map { (list) throws(QBError) in try RestoreSelection(vms: list, names: vms, dom0Home: dom0Home) }
            ?? RestoreSelection(directoryNames: vms, dom0Home: dom0Home)

        if explain {
            let files = try restore.processFiles { _ in .skip }
            let script = ExplainScript(backup: backup, directory: directory, header: header,
                                       authentication: restore.authentication!, passphrase: passphrase.source,
                                       verifyOnly: verifyOnly, qubesXMLChunks: restore.qubesXMLChunks)
            for line in script.lines(files: files, selection: selection) { try Output.line(line) }
            return
        }

        if !verifyOnly {
            for destination in selection.selected { try makeDirectory(destination.directoryName) }
        }
        var created = Set(selection.selected.map(\.directoryName))
        var limits = TarLimits.default
        limits.maxSparseEntries = maxSparseEntries
        var unclaimed: [String] = []
        let files = try restore.processFiles { (file) throws(QBError) -> BackupRestore.Route in
            let vm = selection.owner(of: file)
            if vm == nil { unclaimed.append(file) }
            if verifyOnly {
                return .stream(InnerArchiveTarget(directory: nil, relocation: try MemberRelocation(within: file, stripComponents: 0), limits: limits))
            }
            guard let destination = selection.destination(of: file) else { return .skip }
            if !created.contains(destination.directoryName) {
                try makeDirectory(destination.directoryName)
                created.insert(destination.directoryName)
            }
            return .stream(InnerArchiveTarget(
                directory: path(destination.directoryName),
                relocation: try MemberRelocation(within: file, stripComponents: destination.stripComponents), limits: limits))
        }
        meter?.end()
        for file in unclaimed { Diagnostics.warning("\(file): belongs to no VM listed in qubes.xml; not restored") }
        // Nothing in the format counts the files that follow the header
        // (qubes-backup(5)): a backup cut between two files is a whole,
        // authenticated backup of fewer files. qubes.xml is what says a VM
        // was backed up, so a VM it lists without a single file is refused
        // as truncated; dom0's home is often not listed, so only warned about.
        let missing = selection.missing(among: files.map(\.file))
        for name in missing where name == "dom0" { Diagnostics.warning("--dom0-home: the backup holds no dom0 home") }
        if let name = missing.first(where: { $0 != "dom0" }) {
            throw QBError(.truncated, "no files in the backup", subject: name,
                          hint: selection.byDirectory ? "no such VM directory in the backup" : "qubes.xml lists it: the backup is truncated")
        }
        if files.isEmpty {
            throw QBError(.truncated, "no files after the header and qubes.xml", subject: backup == "-" ? "standard input" : backup,
                          hint: "the backup is truncated")
        }
        if verifyOnly {
            try Output.line("\(backup == "-" ? "standard input" : backup): OK (\(files.count) files authenticated and read to their end)")
        }
    }

    func path(_ name: String) -> String { directory.hasSuffix("/") ? directory + name : directory + "/" + name }

    /// A VM's directory must be new: restoring over an older restore would mix
    /// files of two backups.
    func makeDirectory(_ name: String) throws(QBError) {
        let target = path(name)
        if mkdir(target, 0o700) != 0 {
            let code = errno
            if code == EEXIST {
                throw QBError(.usage, "already exists", subject: target, hint: "restore into another directory with -C, or move it away")
            }
            throw QBError(.io(code), "cannot create directory: \(String(cString: strerror(code)))", subject: target)
        }
    }
}

/// Progress label and --verbose lines.
final class Report: RestoreObserver {
    let meter: ProgressMeter?
    let verbose: Bool
    init(meter: ProgressMeter?, verbose: Bool) { self.meter = meter; self.verbose = verbose }

    func fileStarted(_ file: String) { meter?.label = file }
    func fileFinished(_ file: String) {
        if verbose { meter?.end(); Diagnostics.printLine(file) }
    }
    func warning(_ text: String) {
        meter?.end()
        Diagnostics.warning(text)
    }
}
