#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import QubesBackup
import QubesBackupCLI

struct QBFs: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-fs",
        abstract: "List, extract, print or tar up the files of an ext2/3/4 volume image, read-only, without root or mount.",
        discussion: """
        Step 8 of the emergency-restore procedure ("mount the private.img and \
        access your data") without mounting: qb-fs reads the filesystem in user \
        space, never writes the image, and never trusts it. A Qubes private.img \
        is a bare ext4 filesystem; a template's or StandaloneVM's root.img is a \
        GPT disk whose root filesystem is partition 3 (found on its own when it \
        is the only ext2/3/4 partition; otherwise choose it with --partition).

        PATH is a path inside the filesystem (the leading / is optional) naming \
        a file or a directory tree; without PATH, everything. A journal that \
        needs recovery (a VM that crashed or was killed) is replayed in memory \
        first, as the kernel would at mount time. A volume that holds NTFS, \
        LUKS, LVM, btrfs, XFS or another format is named, with the program \
        that reads it.

        A damaged file or directory is reported on one line (path, inode, what \
        is wrong) and skipped; the rest is read. The exit status is 3 if \
        anything was skipped or could not be verified, 0 only when everything \
        was read and every checksum matched.

        Examples:
          qb-fs --info restored/work/private.img
          qb-fs -tv restored/work/private.img /home/user
          qb-fs -x -C recovered restored/work/private.img /home/user/Documents
          qb-fs -O restored/work/private.img /home/user/notes.txt > notes.txt
          qb-fs --tar restored/work/private.img /home/user | tar -tvf -
        """,
        version: qbVersion)

    @Flag(name: [.customShort("t"), .customLong("list")], help: "List the files (with -v, like tar -tv).")
    var list = false

    @Flag(name: [.customShort("x"), .customLong("extract")], help: "Extract the files into the current directory or the one given with -C.")
    var extract = false

    @Flag(name: [.customShort("O"), .customLong("to-stdout")], help: "Write the contents of the regular files named by PATH to standard output.")
    var toStdout = false

    @Flag(name: .customLong("tar"), help: "Write the files to standard output as a PAX tar archive.")
    var tar = false

    @Flag(name: .customLong("info"), help: "Describe the image: its partitions, then the filesystem.")
    var info = false

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "With -t, a long listing; with -x, the names on standard error.")
    var verbose = false

    @Option(name: [.customShort("C"), .customLong("directory")], help: ArgumentHelp("Extract into this directory (created when missing).", valueName: "dir"))
    var directory: String?

    @Option(help: ArgumentHelp("Read the filesystem in partition N of a disk image (numbered as Linux numbers them: sda3 is 3).", valueName: "n"))
    var partition: Int?

    @Flag(help: "Read the filesystem as it is on disk: do not replay a journal that needs recovery.")
    var noJournal = false

    @Option(help: ArgumentHelp("The most memory the walk holds at once, in bytes (256 MiB by default): open directories and the names kept for hard links. What does not fit is reported and skipped.", valueName: "bytes"))
    var maxMemory = Ext4Filesystem.Options.defaultWalkMemoryBytes

    @OptionGroup var jobs: JobsOption<JobsHelp>
    enum JobsHelp: OptionHelp { static let text = "With -x: files written at once, each by a thread of its own; the default is the number of CPUs this process may use." }

    @Flag(help: "No progress line, even on a terminal.")
    var noProgress = false

    @Flag(name: [.customShort("p"), .customLong("preserve-permissions")], help: "Keep setuid, setgid and sticky bits when extracting.")
    var keepSpecialBits = false

    @Flag(name: .customLong("same-owner"), help: "Give extracted files their stored owner and group (needs privileges).")
    var sameOwner = false

    @Argument(help: ArgumentHelp("The volume image: a file or block device (not a pipe).", valueName: "image"))
    var image: String

    @Argument(help: ArgumentHelp("Files or directories inside the filesystem; none means all.", valueName: "path"))
    var paths: [String] = []

    func validate() throws {
        let modes = [list, extract, toStdout, tar, info].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("choose exactly one of -t, -x, -O, --tar and --info") }
        guard directory == nil || extract else { throw ValidationError("-C only applies to -x") }
        guard !toStdout || !paths.isEmpty else { throw ValidationError("-O needs the PATH of at least one file") }
        guard !info || paths.isEmpty else { throw ValidationError("--info takes no PATH") }
        guard partition.map({ $0 >= 1 }) ?? true else { throw ValidationError("--partition counts from 1") }
        guard maxMemory >= 1 << 20 else { throw ValidationError("--max-memory must be at least 1048576 (1 MiB)") }
        guard image != "-" else {
            throw ValidationError("the image must be a file: a filesystem needs random access, which a pipe cannot give (save it to a file first)")
        }
    }

    func run() throws {
        if info { return try describe() }
        let session = try FilesystemSession(image: image, partition: partition, replayJournal: !noJournal, walkMemoryBytes: maxMemory)
        let export = FilesystemExport(session.filesystem)
        let report = { (problem: FileProblem) in session.report(problem) }
        // File data done out of the filesystem's used space: a little over
        // the files' total (metadata counts too), so it ends a bit short of 100%.
        let meter = noProgress || !(extract || tar) ? nil : ProgressMeter(total: session.filesystem.superblock.usedBytes)
        defer { meter?.end() }
        var files = 0
        let progress = { (bytes: Int) in
            files += 1
            meter?.label = "\(files) files"
            meter?.advance(by: bytes)
        }
        export.progress = progress
        let out = FileDescriptor.standardOutput()
        if list {
            let lines = LineWriter(out)
            var format = ListFormat()
            try export.list(roots: paths, damaged: report) { (node: FileNode) throws(QBError) in
                guard verbose else { try lines.line(node.name); return }
                try lines.line(format.long(node.listingEntry))
            }
            try lines.flush()
        } else if extract {
            try session.extract(roots: paths, into: directory ?? ".",
                                options: .init(keepSpecialBits: keepSpecialBits, preserveOwnership: sameOwner, createSpecialFiles: true),
                                lanes: jobs.value ?? ProcessorCount.usable,
                                progress: progress,
                                extracted: { node in if verbose { meter?.end(); Diagnostics.printLine(node.name) } })
        } else if toStdout {
            let binary = try Output.binary(what: "file contents")
            try export.cat(roots: paths, to: binary, damaged: report)
        } else if tar {
            let binary = try Output.binary(what: "a tar archive")
            try export.tar(roots: paths, to: binary, damaged: report, warning: { Diagnostics.warning($0) })
        }
        meter?.end()
        session.tellFilesystemProblems()
        if let summary = session.summary() {
            Diagnostics.error(summary)
            throw ExitWith(.badInput)
        }
    }

    /// The image, its partition table, then the filesystem; what cannot
    /// be read is named (NTFS, LUKS, LVM, …) with the program that reads it.
    private func describe() throws {
        let file = try ImageFile(path: image)
        let table = try PartitionTable.read(from: file)
        for warning in table.warnings { Diagnostics.warning("\(image): \(warning)") }
        var lines: [String] = []
        lines.append("image: \(image) (\(file.size) bytes)")
        switch table.scheme {
        case .none: lines.append("partition table: none")
        case .mbr, .gpt:
            lines.append("partition table: \(table.scheme == .gpt ? "GPT" : "MBR"), \(table.partitions.count) partition\(table.partitions.count == 1 ? "" : "s")")
            for p in table.partitions {
                var line = "  \(p.number): offset \(p.start), \(p.size) bytes, type \(p.typeName ?? p.type)"
                if !p.name.isEmpty { line += ", name \"\(p.name)\"" }
                switch FilesystemLocator.probe(file, start: p.start, length: p.size) {
                case .ext(let type): line += ", \(type)"
                case .foreign(let format): line += ", \(format.name) (not ext2/3/4: \(format.advice))"
                case .unknown: line += ", no ext2/3/4 filesystem"
                }
                lines.append(line)
            }
        }
        let located: FilesystemLocation
        let fs: Ext4Filesystem
        do {
            located = try FilesystemLocator.locate(in: file, table: table, partition: partition)
            fs = try Ext4Filesystem(window: located.window, options: .init(replayJournal: !noJournal))
        } catch {
            // What was found so far, then the one-line error and its status.
            for line in lines { try Output.line(line) }
            throw error
        }
        lines.append(located.partition.map { "filesystem: partition \($0) at offset \(located.window.start)" } ?? "filesystem: the whole image")
        lines.append(contentsOf: FilesystemSummary(fs).lines.map { "  " + $0 })
        for problem in fs.problems { lines.append("  problem: \(problem)") }
        for line in lines { try Output.line(line) }
        if !fs.problems.isEmpty { throw ExitWith(.badInput) }
    }
}
