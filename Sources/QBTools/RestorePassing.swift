#if canImport(Glibc)
import Glibc
#endif
import QubesBackup
import QubesBackupCLI

/// --list-files, and --files with --path: a VM's private volume read as it
/// passes in the backup, never written. What its filesystem needs is kept
/// as it passes; what passed before anything said it was needed is read in
/// another pass over the backup file (from a pipe, there is none: said so).
/// Extraction takes one more pass, which writes the files' data as it
/// passes. The listing, the files and the damage reports are qb-fs's.
extension QBRestore {
    /// Passes over the backup a volume may take before it is read whole:
    /// each brings the blocks the last one showed were needed, and a block
    /// can only point at others one level down (extent and indirect trees
    /// are at most 5 deep).
    static let maximumPasses = 12
    /// Kept blocks held in memory; more go to an unlinked file beside the output.
    static let keptMemory = 64 << 20

    func readPassing(_ backupFiles: consuming BackupFiles, selection: RestoreSelection, input: FileDescriptor,
                     meter: ProgressMeter?, keys: ScryptKeyCache?) throws {
        let rereader = backupFiles.rereader
        if files {
            try TargetDirectory.create(directory)
            for destination in selection.selected { try makeDirectory(destination.directoryName) }
        }
        let options = FilesystemSession.options()
        var volumes: [String: StreamedVolume] = [:]
        let restored = try backupFiles.process(route: { (file) throws(QBError) -> BackupRestore.Route in
            guard let destination = selection.volumeDestination(of: file, named: volume) else { return .skip }
            let volume = StreamedVolume(file: file, options: options, memoryBudget: Self.keptMemory, spillDirectory: directory)
            volumes[file] = volume
            return .stream(InnerArchiveTarget(directory: nil, relocation: try MemberRelocation(within: file, stripComponents: destination.stripComponents),
                                              image: volume))
        }, located: { file, offset in volumes[file]?.firstChunkOffset = offset })
        meter?.end()
        for (file, chunks) in restored { volumes[file]?.chunks = chunks }
        for destination in selection.selected where destination.directoryName != "dom0-home" {
            guard volumes.keys.contains(where: { selection.volumeDestination(of: $0, named: volume) == destination }) else {
                throw QBError(.truncated, "no \(volume) volume in the backup", subject: destination.vm.name,
                              hint: "the VM's \(volume).img was not backed up, or the backup is cut short")
            }
        }
        var problems = 0
        for (file, streamed) in volumes.sorted(by: { $0.key < $1.key }) {
            guard let destination = selection.volumeDestination(of: file, named: volume) else { continue }
            do throws(QBError) {
                let (filesystem, passes) = try readWhole(streamed, rereader: rereader, input: input)
                let session = FilesystemSession(filesystem: filesystem, image: file, prefix: file + ": ")
                if listFiles {
                    try list(session)
                } else {
                    try extract(session, volume: streamed, window: streamed.filesystem!.window!, into: path(destination.directoryName) + "/files",
                                shown: destination.directoryName + "/files/", rereader: rereader, input: input)
                }
                if verbose {
                    let total = passes + (listFiles ? 0 : 1)
                    let kept = streamed.filesystem?.image.keptBytes ?? (memory: 0, spilled: 0)
                    Diagnostics.printLine("\(file): read in \(total) pass\(total == 1 ? "" : "es") over the backup, the image never written (metadata kept: \(ByteSize.describe(kept.memory)) in memory, \(ByteSize.describe(Int(kept.spilled))) in a spill file)")
                }
                if let summary = session.summary() { Diagnostics.error(summary) }
                problems += session.problemCount
            } catch {
                Diagnostics.error(QBError(error.kind, error.message, subject: file, hint: error.hint).description)
                problems += 1
            }
        }
        if verbose, let (derived, reused) = keys?.counts, derived > 0 {
            Diagnostics.printLine("qb-restore: \(derived) scrypt key derivation\(derived == 1 ? "" : "s"), once per chunk; \(reused) chunk\(reused == 1 ? "" : "s") opened again with the key kept")
        }
        if problems > 0 { throw ExitWith(.badInput) }
    }

    /// Passes over the backup until everything a walk of the selection
    /// reads was kept; returns the filesystem and the passes it took.
    private func readWhole(_ volume: StreamedVolume, rereader: BackupRereader,
                           input: FileDescriptor) throws(QBError) -> (Ext4Filesystem, Int) {
        guard let reader = volume.filesystem else {
            throw QBError(.malformed, "the private volume holds no image", subject: volume.file)
        }
        while !reader.walkable(roots: paths) {
            guard input.regularFileSize != nil else {
                throw QBError(.unsupported, "reading these files needs another pass over the backup (some of the filesystem's metadata comes before what points at it), and a pipe can be read only once",
                              subject: volume.file, hint: "give the backup as a file, or restore the image with --files")
            }
            guard volume.passes < Self.maximumPasses else {
                throw QBError(.limitExceeded, "still not whole after \(volume.passes) passes over the backup", subject: volume.file,
                              hint: "restore the image with --files and read it with qb-fs")
            }
            try pass(volume, rereader: rereader, input: input)
        }
        return (try reader.open(), volume.passes)
    }

    /// One more pass over the volume's chunks in the backup file.
    private func pass(_ volume: StreamedVolume, rereader: BackupRereader, input: FileDescriptor) throws(QBError) {
        guard let offset = volume.firstChunkOffset else {
            throw QBError(.internalError, "where the volume starts in the backup is not known", subject: volume.file)
        }
        try rereader.reread(volume.file, chunks: volume.chunks, at: offset, from: input,
                            into: InnerArchiveTarget(directory: nil, relocation: try MemberRelocation(within: volume.file, stripComponents: 1),
                                                     image: volume))
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

    private func extract(_ session: FilesystemSession, volume: StreamedVolume, window: ImageWindow, into target: String,
                         shown: String, rereader: BackupRereader, input: FileDescriptor) throws(QBError) {
        try TargetDirectory.create(target)
        let verbose = self.verbose
        try FilesystemExport(session.filesystem).extractPassing(
            roots: paths, into: target, options: .init(preserveOwnership: false, createSpecialFiles: true), window: window,
            pass: { (write: (Int64, UnsafeRawBufferPointer) throws(QBError) -> Void) throws(QBError) in
                guard input.regularFileSize != nil else {
                    throw QBError(.unsupported, "writing the files' data needs another pass over the backup, and a pipe can be read only once",
                                  subject: volume.file, hint: "give the backup as a file, or restore the image with --files")
                }
                try withoutActuallyEscaping(write) { (write) throws(QBError) in
                    volume.data = write
                    defer { volume.data = nil }
                    try pass(volume, rereader: rereader, input: input)
                }
            },
            damaged: { session.report($0) }, warning: { Diagnostics.warning($0) },
            extracted: { name in if verbose { Diagnostics.printLine(shown + name) } })
        session.tellFilesystemProblems()
    }
}
