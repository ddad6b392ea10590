#if canImport(Glibc)
import Glibc
#endif
import QubesBackup
import QubesBackupCLI

/// --list-files, and --files with --path: each chosen VM's volume read as it
/// passes in the backup, never written (`VolumePasses`). The listing, the
/// files and the damage reports are qb-fs's.
extension QBRestore {
    /// Kept blocks held in memory; more go to an unlinked file beside the output.
    static let keptMemory = 64 << 20

    func readPassing(_ backupFiles: consuming BackupFiles, selection: RestoreSelection, input: FileDescriptor,
                     meter: ProgressMeter?, keys: ScryptKeyCache?) throws {
        if files {
            try TargetDirectory.create(directory)
            try RestoreRun.prepare(selection, in: directory)
        }
        let passes = try VolumePasses(backupFiles, selection: selection, volume: volume, input: input,
                                      options: FilesystemSession.options(), memoryBudget: Self.keptMemory, spillDirectory: directory)
        meter?.end()
        var problems = 0
        for streamed in passes.volumes {
            guard let destination = selection.volumeDestination(of: streamed.file, named: volume) else { continue }
            let file = streamed.file
            do throws(QBError) {
                let filesystem = try passes.filesystem(of: streamed, paths: paths)
                let session = FilesystemSession(filesystem: filesystem, image: file, prefix: file + ": ")
                if listFiles {
                    try list(session)
                } else {
                    try extract(session, volume: streamed, passes: passes, into: path(destination.directoryName) + "/files",
                                shown: destination.directoryName + "/files/")
                }
                if verbose {
                    let total = streamed.passes
                    let kept = streamed.filesystem?.image.keptBytes ?? (memory: 0, spilled: 0)
                    Diagnostics.printLine("\(file): read in \(total) pass\(total == 1 ? "" : "es") over the backup, the image never written (metadata kept: \(ByteSize.describe(kept.memory)) in memory, \(ByteSize.describe(Int(kept.spilled))) in a spill file)")
                }
                if let summary = session.summary() { Diagnostics.error(summary) }
                problems += session.problemCount
            } catch {
                // "vm3/private.img: /home/nobody: not found in the filesystem"
                let said = QBError(error.kind, (error.subject.flatMap { $0 == file ? nil : $0 + ": " } ?? "") + error.message, subject: file, hint: error.hint)
                // A path that is not there is a usage error, as in qb-fs,
                // and leaves nothing that would stop the corrected command.
                if error.kind == .usage {
                    if files {
                        rmdir(path(destination.directoryName) + "/files")
                        rmdir(path(destination.directoryName))
                    }
                    throw said
                }
                Diagnostics.error(said.description)
                problems += 1
            }
        }
        if verbose, let (derived, reused) = keys?.counts, derived > 0 {
            Diagnostics.printLine("qb-restore: \(derived) scrypt key derivation\(derived == 1 ? "" : "s"), once per chunk; \(reused) chunk\(reused == 1 ? "" : "s") opened again with the key kept")
        }
        if problems > 0 { throw ExitWith(.badInput) }
    }

    private func list(_ session: FilesystemSession) throws(QBError) {
        let lines = LineWriter(FileDescriptor.standardOutput())
        var format = ListFormat()
        try FilesystemExport(session.filesystem).list(roots: paths, damaged: { session.report($0) }) { (node: FileNode) throws(QBError) in
            guard verbose else { try lines.line(node.name); return }
            try lines.line(format.long(node.listingEntry))
        }
        try lines.flush()
        session.tellFilesystemProblems()
    }

    private func extract(_ session: FilesystemSession, volume: StreamedVolume, passes: VolumePasses, into target: String,
                         shown: String) throws(QBError) {
        try TargetDirectory.create(target)
        let verbose = self.verbose
        try FilesystemExport(session.filesystem).extractPassing(
            roots: paths, into: target, options: .init(preserveOwnership: false, createSpecialFiles: true),
            window: volume.filesystem!.window!,
            pass: { (write) throws(QBError) in try passes.pass(volume, data: write) },
            damaged: { session.report($0) }, warning: { Diagnostics.warning($0) },
            extracted: { name in if verbose { Diagnostics.printLine(shown + name) } })
        session.tellFilesystemProblems()
    }
}
