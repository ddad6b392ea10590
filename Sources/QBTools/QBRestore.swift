#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Synchronization
import QubesBackup
import QubesBackupCLI

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
        DIR/dom0-home/USER/ with --dom0-home. The backup may be a pipe; from \
        a file, the chunks of VMs not restored are skipped, not read (nor \
        authenticated: --verify-only reads and authenticates everything).

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
          ssh nas cat backup.qubes \\
            | qb-restore --passphrase file:pass.txt -C restored - work
          qb-restore --verify-only --passphrase env:P backup.qubes
          qb-restore --explain --passphrase env:P backup.qubes work > restore-work.sh
          qb-restore --files -C restored --passphrase env:P backup.qubes work
        """,
        version: qbVersion)

    @Flag(name: [.customShort("l"), .customLong("list")], help: "List the VMs in the backup (after authenticating the header and qubes.xml) and stop.")
    var list = false

    @Flag(help: "Authenticate and check every file of the backup, to the end of every archive; write nothing.")
    var verifyOnly = false

    @Flag(help: "Print the small-tool pipelines (qb-untar, qb-hmac, qb-decrypt, qb-decompress) that restore the same files, and run nothing.")
    var explain = false

    @Flag(help: "Also restore dom0's home directory, into DIR/dom0-home.")
    var dom0Home = false

    @Flag(help: "Then read each restored VM's private.img filesystem and extract its files into DIR/VM/files/ (step 8, as qb-fs -x).")
    var files = false

    @Flag(help: "With --files: remove private.img once all its files were extracted without a problem.")
    var filesOnly = false

    @Flag(help: "With --list: JSON output.")
    var json = false

    @Option(name: [.customShort("C"), .customLong("directory")], help: ArgumentHelp("Restore into this directory, created when missing (default: the current one).", valueName: "dir"))
    var directory = "."

    @OptionGroup var jobs: JobsOption<JobsHelp>
    enum JobsHelp: OptionHelp { static let text = "The most chunks authenticated (v4: keys derived) at once (default: the CPUs this process may use); fewer when memory does not pay for that many (a v4 derivation takes 1 or 2 GiB)." }

    @OptionGroup var maxSize: MaxSizeOption<MaxSizeHelp>
    enum MaxSizeHelp: OptionHelp { static let text = "Largest chunk to hold in memory while it is authenticated, in bytes (Qubes writes 100 MiB)." }

    @OptionGroup var maxMemory: MaxMemoryOption<MaxMemoryHelp>
    enum MaxMemoryHelp: OptionHelp { static let text = "v4: largest scrypt memory, 128·r·(N+p+2), to accept, in bytes (default: the memory available)." }

    @OptionGroup var maxSparseEntries: MaxSparseEntriesOption<MaxSparseEntriesHelp>
    enum MaxSparseEntriesHelp: OptionHelp { static let text = "Most regions the sparse map of a restored file may list (default 1000000); raise it only for a backup you trust." }

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Say how many chunks are worked on at once and why, and name each file on standard error as it is finished.")
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
        if filesOnly && !files { throw ValidationError("--files-only goes with --files") }
        if files && (list || verifyOnly) { throw ValidationError("--files restores files: not with --list or --verify-only") }
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
        let options = RestoreOptions(parallelism: jobs.value, maximumChunkSize: maxSize.value, scryptLimits: maxMemory.limits)
        let authenticated = try BackupRestore(source: MeteredSource(input, meter: meter), passphrase: secret,
                                              options: options, observer: report).readHeader()
        let header = authenticated.header
        let backupFiles = try authenticated.readVMList()
        let vmList = backupFiles.vms
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
            let authentication = backupFiles.authentication, qubesXMLChunks = backupFiles.qubesXMLChunks
            let planned = try backupFiles.process { _ in .skip }
            let script = ExplainScript(backup: backup, directory: directory, header: header,
                                       authentication: authentication, passphrase: passphrase.source,
                                       verifyOnly: verifyOnly, qubesXMLChunks: qubesXMLChunks,
                                       readFilesystems: files, filesOnly: filesOnly, plan: report.plan)
            for line in script.lines(files: planned, selection: selection) { try Output.line(line) }
            return
        }

        if !verifyOnly {
            // As `unzip -d` and `restic restore --target` do; the VMs'
            // own directories below it must still be new.
            try TargetDirectory.create(directory)
            for destination in selection.selected { try makeDirectory(destination.directoryName) }
        }
        var created = Set(selection.selected.map(\.directoryName))
        var limits = TarLimits.default
        limits.maxSparseEntries = maxSparseEntries.value
        var unclaimed: [String] = []
        let restored: [(file: String, chunks: Int)]
        do {
            restored = try backupFiles.process { (file) throws(QBError) -> BackupRestore.Route in
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
        } catch {
            // The VMs whose images came out whole before the failure still
            // get their files read.
            meter?.end()
            if files { _ = extractFiles(selection: selection, finished: report.finished) }
            throw error
        }
        meter?.end()
        for file in unclaimed { Diagnostics.warning("\(file): belongs to no VM listed in qubes.xml; not restored") }
        // Nothing in the format counts the files that follow the header
        // (qubes-backup(5)): a backup cut between two files is a whole,
        // authenticated backup of fewer files. Without qubes.xml, a VM
        // directory asked for by name and absent is refused here; with it,
        // BackupCompleteness below says what each VM must bring. dom0's home
        // not listed in qubes.xml is only warned about.
        let missing = selection.missing(among: restored.map(\.file))
        for name in missing where name == "dom0" { Diagnostics.warning("--dom0-home: the backup holds no dom0 home") }
        if selection.byDirectory, let name = missing.first(where: { $0 != "dom0" }) {
            throw QBError(.truncated, "no files in the backup", subject: name, hint: "no such VM directory in the backup")
        }
        // A cut inside a VM's files, or before dom0's home, leaves no broken
        // chunk: what qubes.xml says each VM brings is what tells.
        var incomplete: [String] = []
        if let vmList {
            let checked = verifyOnly ? vmList : selection.selected.map(\.vm)
            incomplete = BackupCompleteness.missing(vms: checked, files: restored.map(\.file))
            if (verifyOnly || dom0Home) && BackupCompleteness.lacksDom0Home(vms: vmList, files: restored.map(\.file)) {
                incomplete.append("truncated backup: qubes.xml says dom0's home was backed up, but no dom0-home/ file came")
            }
        }
        for line in incomplete { Diagnostics.error(line) }
        if restored.isEmpty {
            throw QBError(.truncated, "no files after the header and qubes.xml", subject: backup == "-" ? "standard input" : backup,
                          hint: "the backup is truncated")
        }
        if verifyOnly && incomplete.isEmpty {
            try Output.line("\(backup == "-" ? "standard input" : backup): OK (\(restored.count) files authenticated and read to their end)")
        }
        if files && extractFiles(selection: selection, finished: report.finished) > 0 {
            throw ExitWith(.badInput)
        }
        if !incomplete.isEmpty { throw ExitWith(.badInput) }
    }

    /// Step 8 for every selected VM whose private.img was restored whole:
    /// its filesystem's files go to DIR/VM/files/, as `qb-fs -x` would put
    /// them. Damage is reported file by file; returns how many problems
    /// were found in all (a VM whose image cannot be read at all counts one).
    func extractFiles(selection: RestoreSelection, finished: Set<String>) -> Int {
        var problems = 0
        for member in finished.sorted() {
            guard let destination = selection.privateVolumeDestination(of: member) else { continue }
            let vmDirectory = path(destination.directoryName)
            let image = vmDirectory + "/private.img"
            do throws(QBError) {
                let session = try FilesystemSession(image: image, prefix: destination.directoryName + "/private.img: ")
                let found = try session.extract(roots: [], into: vmDirectory + "/files",
                                                options: .init(preserveOwnership: false, createSpecialFiles: true),
                                                lanes: ProcessorCount.usable,
                                                extracted: { node in if verbose { Diagnostics.printLine(destination.directoryName + "/files/" + node.name) } })
                if let summary = session.summary() { Diagnostics.error(summary) }
                problems += found
                if filesOnly {
                    if found == 0 {
                        unlink(image)
                    } else {
                        Diagnostics.warning("\(image): kept, since not all its files could be read")
                    }
                }
            } catch {
                // qb-fs's hints name its own options; here the image is simply unreadable.
                Diagnostics.error(QBError(error.kind, error.message, subject: image).description)
                problems += 1
            }
        }
        return problems
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
    /// Backup files restored whole, for --files; told from the restore's
    /// worker threads.
    private let finishedFiles = Mutex(Set<String>())
    var finished: Set<String> { finishedFiles.withLock { $0 } }
    init(meter: ProgressMeter?, verbose: Bool) { self.meter = meter; self.verbose = verbose }

    /// What the restore chose, for --explain.
    private(set) var plan: JobPlan?

    func jobsPlanned(_ plan: JobPlan) {
        self.plan = plan
        if verbose { JobReport.planned(plan) }
    }
    func jobsLowered(to jobs: Int) {
        guard verbose else { return }
        meter?.end()
        JobReport.lowered(to: jobs)
    }
    func fileStarted(_ file: String) { meter?.label = file }
    func fileFinished(_ file: String) {
        finishedFiles.withLock { _ = $0.insert(file) }
        if verbose { meter?.end(); Diagnostics.printLine(file) }
    }
    func warning(_ text: String) {
        meter?.end()
        Diagnostics.warning(text)
    }
}
