/// The chosen VMs' volumes read straight from a backup, never written
/// (`qb-restore --list-files`, `--files --path`): the first pass is the
/// rest of the restore's own pass, which keeps what each volume's
/// filesystem reader needs as the image passes (`StreamedVolume`); what
/// passed before anything said it was needed takes another pass over the
/// backup file, from the volume's first chunk (`BackupRereader`), and so
/// does the files' data. From a pipe there is only the first pass: a
/// volume that needs another is refused, and says so.
public final class VolumePasses {
    /// Passes over the backup a volume may take before it is read whole:
    /// each brings the blocks the last one showed were needed, and a block
    /// can only point at others one level down (extent and indirect trees
    /// are at most 5 deep, a journal's replay adds one).
    public static let maximumPasses = 12

    /// The volumes met, by backed-up file (`vm3/private.img`), in order.
    public let volumes: [StreamedVolume]
    private let rereader: BackupRereader
    private let input: FileDescriptor
    /// Each volume's member relocation, as the first pass made it.
    private let relocations: [String: MemberRelocation]

    /// Reads the rest of the backup (from `input`, where `backupFiles`
    /// reads it), keeping `volume` ("private" or "root") of each VM
    /// `selection` chose; kept blocks beyond `memoryBudget` go to an
    /// unlinked file in `spillDirectory`. A chosen VM without that volume
    /// is refused once the pass is over.
    public init(_ backupFiles: consuming BackupFiles, selection: RestoreSelection, volume: String, input: FileDescriptor,
                options: Ext4Filesystem.Options, memoryBudget: Int, spillDirectory: String) throws(QBError) {
        rereader = backupFiles.rereader
        self.input = input
        var found: [String: StreamedVolume] = [:]
        var relocations: [String: MemberRelocation] = [:]
        let met = try backupFiles.process(route: { (file) throws(QBError) -> BackupRestore.Route in
            guard let destination = selection.volumeDestination(of: file, named: volume) else { return .skip }
            let streamed = StreamedVolume(file: file, options: options, memoryBudget: memoryBudget, spillDirectory: spillDirectory)
            let relocation = try MemberRelocation(within: file, stripComponents: destination.stripComponents)
            found[file] = streamed
            relocations[file] = relocation
            return .stream(InnerArchiveTarget(directory: nil, relocation: relocation, image: streamed))
        }, located: { file, offset in found[file]?.firstChunkOffset = offset })
        for (file, chunks) in met { found[file]?.chunks = chunks }
        for destination in selection.selected where destination.directoryName != "dom0-home" {
            guard found.keys.contains(where: { selection.volumeDestination(of: $0, named: volume) == destination }) else {
                throw QBError(.truncated, "no \(volume) volume in the backup", subject: destination.vm.name,
                              hint: "the VM's \(volume).img was not backed up, or the backup is cut short")
            }
        }
        volumes = found.keys.sorted().map { found[$0]! }
        self.relocations = relocations
    }

    /// The volume's filesystem, once a walk of `paths` (all of it when
    /// empty) reads only blocks that were kept: after as many further
    /// passes as that takes.
    public func filesystem(of volume: StreamedVolume, paths: [String]) throws(QBError) -> Ext4Filesystem {
        guard let reader = volume.filesystem else {
            throw QBError(.malformed, "the volume holds no image", subject: volume.file)
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
            try pass(volume)
        }
        return try reader.open()
    }

    /// One more pass over the volume's chunks, telling `data` every byte of
    /// the image as it passes: the pass that writes the files' contents
    /// (`FilesystemExport.extractPassing`).
    public func pass(_ volume: StreamedVolume, data: (Int64, UnsafeRawBufferPointer) throws(QBError) -> Void) throws(QBError) {
        guard input.regularFileSize != nil else {
            throw QBError(.unsupported, "writing the files' data needs another pass over the backup, and a pipe can be read only once",
                          subject: volume.file, hint: "give the backup as a file, or restore the image with --files")
        }
        try withoutActuallyEscaping(data) { (data) throws(QBError) in
            volume.data = data
            defer { volume.data = nil }
            try pass(volume)
        }
    }

    private func pass(_ volume: StreamedVolume) throws(QBError) {
        guard let offset = volume.firstChunkOffset, let relocation = relocations[volume.file] else {
            throw QBError(.internalError, "where the volume starts in the backup is not known", subject: volume.file)
        }
        try rereader.reread(volume.file, chunks: volume.chunks, at: offset, from: input,
                            into: InnerArchiveTarget(directory: nil, relocation: relocation, image: volume))
    }
}
