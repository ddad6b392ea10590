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

        --list-files lists a VM's files, and --files --path extracts some of \
        them, straight from the backup: the volume is read as it passes and \
        never written. What passed before anything pointed at it, and the \
        files' data, take another pass over the backup file (-v counts them).

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
          qb-restore --list-files -v --passphrase env:P backup.qubes work
          qb-restore --files --path /home/user/Documents -C restored \\
            --passphrase env:P backup.qubes work
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

    @Flag(help: "List the files of the VM's private volume (as qb-fs -t; with -v, -tv) straight from the backup, writing nothing: not even the image.")
    var listFiles = false

    @Option(name: .customLong("path"), help: ArgumentHelp("With --files or --list-files: only this file or directory tree of the private volume (repeatable). With --files, the files come straight from the backup: the image is never written.", valueName: "path"))
    var paths: [String] = []

    @Option(help: ArgumentHelp("With --list-files or --files --path: the VM's volume to read, private or root (a template's or StandaloneVM's root.img, a GPT disk).", valueName: "name"))
    var volume = "private"

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
        if listFiles && (files || list || verifyOnly || explain || dom0Home) {
            throw ValidationError("--list-files lists one VM's files: not with --files, --list, --verify-only, --explain or --dom0-home")
        }
        if listFiles && vms.count != 1 { throw ValidationError("--list-files takes the name of one VM") }
        if !paths.isEmpty && !(files || listFiles) { throw ValidationError("--path goes with --files or --list-files") }
        guard ["private", "root"].contains(volume) else { throw ValidationError("--volume is private or root") }
        if volume != "private" && !(listFiles || !paths.isEmpty) { throw ValidationError("--volume goes with --list-files or --files --path") }
        if !paths.isEmpty && (filesOnly || explain) {
            throw ValidationError("--files --path writes no image: not with --files-only or --explain")
        }
    }

    func run() throws {
        let input = try FileDescriptor.input(backup)
        if input.rawValue == 0 && input.isTerminal {
            throw QBError(.usage, "the backup would be read from a terminal", hint: "give a file, or pipe the backup in")
        }
        if files && !paths.isEmpty && input.regularFileSize == nil {
            throw QBError(.usage, "--files --path reads the backup twice or more (the files' data is written in a pass of its own), and a pipe can be read only once",
                          subject: backup == "-" ? "standard input" : backup, hint: "give the backup as a file, or restore the image with --files")
        }
        let secret = try passphrase.read()
        let meter = noProgress || list || explain ? nil : ProgressMeter(total: input.regularFileSize)
        defer { meter?.end() }
        let report = Report(meter: meter, verbose: verbose)
        var options = RestoreOptions(parallelism: jobs.value, maximumChunkSize: maxSize.value, scryptLimits: maxMemory.limits)
        // A volume read without writing it may be read again: each v4
        // chunk's key is derived once in all.
        if listFiles || !paths.isEmpty { options.chunkKeys = ScryptKeyCache() }
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
        if listFiles || !paths.isEmpty {
            return try readPassing(backupFiles, selection: selection, input: input, meter: meter, keys: options.chunkKeys)
        }

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
            try RestoreRun.prepare(selection, in: directory)
        }
        var limits = TarLimits.default
        limits.maxSparseEntries = maxSparseEntries.value
        let outcome: RestoreRun.Outcome
        do {
            outcome = try RestoreRun.run(backupFiles, selection: selection, mode: verifyOnly ? .verify : .restore(directory: directory),
                                         limits: limits, dom0Home: dom0Home, subject: backup == "-" ? "standard input" : backup)
        } catch {
            // The VMs whose images came out whole before the failure still
            // get their files read.
            meter?.end()
            if files { _ = extractFiles(selection: selection, finished: report.finished) }
            throw error
        }
        meter?.end()
        for file in outcome.unclaimed { Diagnostics.warning("\(file): belongs to no VM listed in qubes.xml; not restored") }
        if outcome.noDom0Home { Diagnostics.warning("--dom0-home: the backup holds no dom0 home") }
        try outcome.checkAskedFor()
        for line in outcome.incomplete { Diagnostics.error(line) }
        try outcome.checkNotEmpty()
        if verifyOnly && outcome.incomplete.isEmpty {
            try Output.line("\(backup == "-" ? "standard input" : backup): OK (\(outcome.files.count) files authenticated and read to their end)")
        }
        if files && extractFiles(selection: selection, finished: report.finished) > 0 {
            throw ExitWith(.badInput)
        }
        if !outcome.incomplete.isEmpty { throw ExitWith(.badInput) }
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

    func path(_ name: String) -> String { RestoreRun.path(name, in: directory) }
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
