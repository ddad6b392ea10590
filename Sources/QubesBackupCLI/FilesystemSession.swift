import QubesBackup

/// The filesystem inside a volume image, opened the way every tool opens it
/// (partition table read, the filesystem located, the journal replayed in
/// memory unless told not to), with the problems it reports counted and
/// printed as one line each.
public final class FilesystemSession {
    public let image: String
    public let filesystem: Ext4Filesystem
    /// Problems printed so far: damaged files and filesystem-wide ones.
    public private(set) var problemCount = 0
    /// Put before each damaged file's line (qb-restore names the image there).
    private let prefix: String
    private var filesystemProblemsTold = 0

    /// `quiet`: print nothing on opening (`--info` shows the problems
    /// itself, on standard output).
    public init(image: String, partition: Int? = nil, replayJournal: Bool = true,
                walkMemoryBytes: Int = Ext4Filesystem.Options.defaultWalkMemoryBytes, prefix: String = "",
                quiet: Bool = false) throws(QBError) {
        self.image = image
        self.prefix = prefix
        let file = try ImageFile(path: image)
        let table = try PartitionTable.read(from: file)
        for warning in table.warnings { Diagnostics.warning("\(image): \(warning)") }
        let location = try FilesystemLocator.locate(in: file, table: table, partition: partition)
        filesystem = try Ext4Filesystem(window: location.window, options: Self.options(replayJournal: replayJournal, walkMemoryBytes: walkMemoryBytes))
        if quiet { return }
        if !replayJournal && filesystem.superblock.features.incompatible.contains(.needsRecovery) {
            Diagnostics.warning("\(image): the journal needs recovery and was not replayed (--no-journal): the last changes before the VM stopped may be missing")
        }
        tellFilesystemProblems()
    }

    /// The reader's options as every tool sets them.
    public static func options(replayJournal: Bool = true,
                               walkMemoryBytes: Int = Ext4Filesystem.Options.defaultWalkMemoryBytes) -> Ext4Filesystem.Options {
        .init(replayJournal: replayJournal, walkMemoryBytes: walkMemoryBytes, budgetHint: "qb-fs --max-memory raises it")
    }

    /// A filesystem opened elsewhere (read as it passes in a backup), named
    /// `image` in messages.
    public init(filesystem: Ext4Filesystem, image: String, prefix: String = "") {
        self.image = image
        self.prefix = prefix
        self.filesystem = filesystem
        tellFilesystemProblems()
    }

    /// One line for a damaged file or directory.
    public func report(_ problem: FileProblem) {
        Diagnostics.error(prefix + problem.description)
        problemCount += 1
    }

    /// Prints the filesystem-wide problems not printed yet (found on opening,
    /// or while walking, as a group descriptor's).
    public func tellFilesystemProblems() {
        for problem in filesystem.problems.dropFirst(filesystemProblemsTold) {
            Diagnostics.error("\(image): \(problem)")
            problemCount += 1
        }
        filesystemProblemsTold = filesystem.problems.count
    }

    /// Extracts `roots` (everything when empty) into `directory`, created
    /// when missing; returns the number of problems found in all.
    @discardableResult
    public func extract(roots: [String], into directory: String, options: TarExtractor.Options, lanes: Int,
                        progress: ((Int) -> Void)? = nil, extracted: @escaping (FileNode) -> Void = { _ in }) throws(QBError) -> Int {
        try TargetDirectory.create(directory)
        let export = FilesystemExport(filesystem)
        if let progress { export.progress = progress }
        try export.extract(roots: roots, into: directory, options: options, lanes: lanes, damaged: { self.report($0) },
                           warning: { Diagnostics.warning($0) }, extracted: extracted)
        tellFilesystemProblems()
        return problemCount
    }

    /// The closing line when anything was wrong.
    public func summary() -> String? {
        problemCount == 0 ? nil : "\(image): \(problemCount) problem\(problemCount == 1 ? "" : "s") found; everything else was read"
    }
}
