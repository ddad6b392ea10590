/// A VM's private volume read as it passes in a backup, never written: the
/// inner archive's image goes here instead of to disk, pass after pass,
/// and what the filesystem reader needs of it is kept (`StreamedImage`,
/// `StreamedFilesystem`). `data` sees every byte of a pass as well: the
/// pass that writes the files' contents.
public final class StreamedVolume: InnerImageSink, @unchecked Sendable {
    // @unchecked: a pass is fed by one thread (the inner archive's); the
    // reader is used between passes, after that thread was joined.

    /// The backed-up file (`vm3/private.img`), for messages and passes.
    public let file: String
    public let partition: Int?
    public let options: Ext4Filesystem.Options
    private let memoryBudget: Int
    private let spillDirectory: String
    public private(set) var filesystem: StreamedFilesystem?
    /// Where the file's first chunk starts in the backup, and how many
    /// chunks it has: what a later pass reads again.
    public var firstChunkOffset: Int64?
    public var chunks = 0
    /// Told every byte of the passes while it is set.
    public var data: ((Int64, UnsafeRawBufferPointer) throws(QBError) -> Void)?

    public init(file: String, partition: Int? = nil, options: Ext4Filesystem.Options, memoryBudget: Int, spillDirectory: String) {
        self.file = file
        self.partition = partition
        self.options = options
        self.memoryBudget = memoryBudget
        self.spillDirectory = spillDirectory
    }

    public var passes: Int { filesystem?.image.passes ?? 0 }

    public func begin(size: Int64, name: String) throws(QBError) {
        if let filesystem {
            guard filesystem.image.size == size else {
                throw QBError(.malformed, "the image is \(size) bytes in this pass, \(filesystem.image.size) in the first",
                              subject: file, hint: "the backup changed since it was first read")
            }
        } else {
            let image = StreamedImage(path: file, size: size, memoryBudget: memoryBudget, spillDirectory: spillDirectory)
            filesystem = StreamedFilesystem(image: image, partition: partition, options: options)
        }
        filesystem!.image.beginPass()
    }

    public func pass(_ offset: Int64, _ bytes: UnsafeRawBufferPointer) throws(QBError) {
        try filesystem?.image.pass(offset, bytes)
        try data?(offset, bytes)
    }

    public func end() throws(QBError) {
        try filesystem?.image.endPass()
    }
}
