#if canImport(Glibc)
import Glibc
#endif

/// The chosen VMs restored into a directory, or every file verified: where
/// each backed-up file goes, and what the files met say of the backup's
/// completeness — `qb-restore`'s policy, which the command only prints.
public enum RestoreRun {
    public enum Mode: Sendable {
        /// Each chosen VM's files into `directory`/NAME/, which must be new.
        case restore(directory: String)
        /// Every file authenticated and read to its end; nothing written.
        case verify
    }

    /// What a run met.
    public struct Outcome {
        /// The backed-up files met, in order, with their chunk counts.
        public let files: [(file: String, chunks: Int)]
        /// Files that belong to no VM listed in qubes.xml: not restored.
        public let unclaimed: [String]
        /// One line per VM qubes.xml lists (the chosen ones; all of them
        /// when verifying) whose files did not all come, and dom0's home.
        public let incomplete: [String]
        /// dom0's home was asked for and the backup holds none.
        public let noDom0Home: Bool
        /// Without qubes.xml: a VM directory asked for by name that never came.
        let absentDirectory: String?
        let subject: String

        /// Refuses a run that restored nothing it was asked for: a VM
        /// directory asked for by name (without qubes.xml) that never came.
        /// Said after the warnings about what came.
        public func checkAskedFor() throws(QBError) {
            if let absentDirectory {
                throw QBError(.truncated, "no files in the backup", subject: absentDirectory, hint: "no such VM directory in the backup")
            }
        }

        /// Refuses a backup with nothing at all after qubes.xml. Said after
        /// the `incomplete` lines.
        public func checkNotEmpty() throws(QBError) {
            if files.isEmpty {
                throw QBError(.truncated, "no files after the header and qubes.xml", subject: subject, hint: "the backup is truncated")
            }
        }
    }

    /// Makes every chosen VM's directory below `directory` (which exists):
    /// done before the first chunk is read, so that a name already taken
    /// stops the run before any work.
    public static func prepare(_ selection: RestoreSelection, in directory: String) throws(QBError) {
        for destination in selection.selected { try makeDirectory(destination.directoryName, in: directory) }
    }

    /// Reads the rest of the backup, restoring or verifying as `mode` says.
    /// Nothing in the format counts the files that follow the header
    /// (qubes-backup(5)): a backup cut between two files is a whole,
    /// authenticated backup of fewer files, and a cut inside a VM's files
    /// leaves no broken chunk. What qubes.xml says each VM brings is what
    /// tells (`BackupCompleteness`); without it, the VM directories asked
    /// for by name. `subject` names the backup in messages.
    public static func run(_ backupFiles: consuming BackupFiles, selection: RestoreSelection, mode: Mode, limits: TarLimits,
                           dom0Home: Bool, subject: String) throws(QBError) -> Outcome {
        let vmList = backupFiles.vms
        var created = Set(selection.selected.map(\.directoryName))
        var unclaimed: [String] = []
        let files = try backupFiles.process { (file) throws(QBError) -> BackupRestore.Route in
            if selection.owner(of: file) == nil { unclaimed.append(file) }
            guard case .restore(let directory) = mode else {
                return .stream(InnerArchiveTarget(directory: nil, relocation: try MemberRelocation(within: file, stripComponents: 0), limits: limits))
            }
            guard let destination = selection.destination(of: file) else { return .skip }
            if !created.contains(destination.directoryName) {
                try makeDirectory(destination.directoryName, in: directory)
                created.insert(destination.directoryName)
            }
            return .stream(InnerArchiveTarget(
                directory: path(destination.directoryName, in: directory),
                relocation: try MemberRelocation(within: file, stripComponents: destination.stripComponents), limits: limits))
        }
        let names = files.map(\.file)
        let missing = selection.missing(among: names)
        let verifying: Bool
        if case .verify = mode { verifying = true } else { verifying = false }
        var incomplete: [String] = []
        if let vmList {
            incomplete = BackupCompleteness.missing(vms: verifying ? vmList : selection.selected.map(\.vm), files: names)
            if (verifying || dom0Home) && BackupCompleteness.lacksDom0Home(vms: vmList, files: names) {
                incomplete.append("truncated backup: qubes.xml says dom0's home was backed up, but no dom0-home/ file came")
            }
        }
        return Outcome(files: files, unclaimed: unclaimed, incomplete: incomplete, noDom0Home: missing.contains("dom0"),
                       absentDirectory: selection.byDirectory ? missing.first(where: { $0 != "dom0" }) : nil, subject: subject)
    }

    /// `directory`/`name`.
    public static func path(_ name: String, in directory: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// A VM's directory must be new: restoring over an older restore would
    /// mix the files of two backups.
    public static func makeDirectory(_ name: String, in directory: String) throws(QBError) {
        let target = path(name, in: directory)
        if mkdir(target, 0o700) != 0 {
            let code = errno
            if code == EEXIST {
                throw QBError(.usage, "already exists", subject: target, hint: "restore into another directory with -C, or move it away")
            }
            throw QBError(.io(code), "cannot create directory: \(String(cString: strerror(code)))", subject: target)
        }
    }
}
