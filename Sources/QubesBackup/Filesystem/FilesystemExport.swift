#if canImport(Glibc)
import Glibc
#endif

/// The four things qb-fs does with a selection of files: list, extract,
/// print, and pass on as tar. Damaged files go to `damaged` and are
/// skipped; an error thrown out of these ends the work (the output failed,
/// or a requested path does not exist).
public final class FilesystemExport {
    public let filesystem: Ext4Filesystem
    let buffer: UnsafeMutableRawBufferPointer
    /// Told the size of each regular file written (extraction and tar).
    public var progress: (Int) -> Void = { _ in }

    public init(_ filesystem: Ext4Filesystem) {
        self.filesystem = filesystem
        buffer = .allocate(byteCount: 1 << 20, alignment: 4096)
    }

    deinit { buffer.deallocate() }

    /// Every selected file, parents first.
    public func list(roots: [String], damaged: (FileProblem) -> Void,
                     _ body: (FileNode) throws(QBError) -> Void) throws(QBError) {
        try filesystem.walk(roots: roots, visit: { (node: FileNode) throws(QBError) -> Bool in
            try body(node)
            return true
        }, damaged: damaged)
    }

    /// Extracts the selection into `directory` (which must exist), as
    /// TarExtractor does: confined, temporary name then rename, holes kept,
    /// hard links linked. Files are written by `lanes` threads while the
    /// walk goes on (see ExtractionLanes); `extracted` hears of each file
    /// written, `warning` of things not restored (a device without
    /// privilege, a socket), all on the calling thread.
    public func extract(roots: [String], into directory: String, options: TarExtractor.Options, lanes count: Int,
                        damaged: (FileProblem) -> Void, warning: (String) -> Void,
                        extracted: (FileNode) -> Void = { _ in }) throws(QBError) {
        let fs = filesystem
        let directories = try TarExtractor(targetDirectory: directory, options: options)
        let lanes = try ExtractionLanes(filesystem: fs, count: count) { () throws(QBError) in
            try TarExtractor(targetDirectory: directory, options: options)
        }
        var failure: QBError?
        func handOver() {
            for event in lanes.takeEvents() {
                switch event {
                case .written(let node, let size, let warnings):
                    for w in warnings { warning(w) }
                    if let size { progress(size) }
                    extracted(node)
                case .damaged(let problem): damaged(problem)
                case .failed(let error): failure = failure ?? error
                }
            }
        }
        do throws(QBError) {
            try fs.walk(roots: roots, visit: { (node: FileNode) throws(QBError) -> Bool in
                handOver()
                if let failure { throw failure }
                guard let entry = node.tarEntry else {
                    warning("\(node.name): socket not extracted")
                    return false
                }
                guard entry.kind == .directory else {
                    lanes.submit(.init(node: node, entry: entry))
                    return true
                }
                // Made here, before anything inside it is queued.
                do throws(QBError) {
                    _ = try directories.extract(entry, contents: { (_: Int32, _: String) throws(QBError) in })
                } catch {
                    guard Self.isThisFilesProblem(error) else { throw error }
                    damaged(FileProblem(path: node.name, inode: node.inode.number, error: error))
                    return false
                }
                extracted(node)
                return true
            }, damaged: damaged)
        } catch {
            lanes.finish()
            handOver()
            throw error
        }
        lanes.finish()
        handOver()
        if let failure { throw failure }
        try lanes.finishExtractors()
        try directories.finish()
    }

    /// Whether an extraction error is one file's (the image damaged under
    /// it, a name that would escape, this machine refusing that one file)
    /// rather than the output failing, which ends the extraction.
    static func isThisFilesProblem(_ error: QBError) -> Bool {
        switch error.kind {
        case .io(let code): return refusesOnlyThisFile(code)
        case .cryptoLibrary, .cancelled, .internalError, .outOfMemory: return false
        default: return true
        }
    }

    /// Whether `errno` from creating a file says this machine cannot hold
    /// that one file (its name, its link target, its size, its kind), not
    /// that the output has failed: a symbolic link target past PATH_MAX
    /// (ENAMETOOLONG), a name the filesystem refuses (EINVAL, EILSEQ), a
    /// file larger than it allows (EFBIG), too many links (EMLINK), a kind
    /// it cannot make (EPERM, EOPNOTSUPP). A full disk, a read-only or
    /// failing one (ENOSPC, EDQUOT, EROFS, EIO) ends the extraction.
    static func refusesOnlyThisFile(_ code: Int32) -> Bool {
        [ENAMETOOLONG, EINVAL, EILSEQ, EFBIG, EMLINK, EPERM, EOPNOTSUPP, EOVERFLOW].contains(code)
    }

    /// Writes the contents of the selected regular files to `out`, one
    /// after the other, holes as zeros.
    public func cat(roots: [String], to out: FileDescriptor, damaged: (FileProblem) -> Void) throws(QBError) {
        let fs = filesystem, buffer = self.buffer
        let zeros = [UInt8](repeating: 0, count: 1 << 16)
        try fs.walk(roots: roots, visit: { (node: FileNode) throws(QBError) -> Bool in
            guard node.kind == .regular else { return true }
            var written: Int64 = 0
            func zeroFill(to end: Int64) throws(QBError) {
                while written < end {
                    let n = Int(min(Int64(zeros.count), end - written))
                    try out.write(zeros[0..<n])
                    written += Int64(n)
                }
            }
            do throws(DataCopyError) {
                try fs.readContents(of: node.inode, buffer: buffer) { (offset: Int64, bytes: UnsafeRawBufferPointer) throws(QBError) in
                    try zeroFill(to: offset)
                    try out.write(RawSpan(_unsafeBytes: bytes))
                    written += Int64(bytes.count)
                }
            } catch {
                switch error {
                case .source(let e):
                    // Bytes already written cannot be taken back: the
                    // report and the exit status tell the file is short.
                    damaged(FileProblem(path: node.name, inode: node.inode.number, error: e))
                    return false
                case .destination(let e): throw e
                }
            }
            try zeroFill(to: Int64(node.inode.size))
            return true
        }, damaged: damaged)
    }

    /// Writes the selection to `out` as a PAX archive: files with holes as
    /// PAX sparse 1.0 (GNU tar recreates the holes), hard links as links
    /// to the first name written. A file whose map cannot be read is
    /// reported and left out; one whose data fails to read once its header
    /// is out ends the archive unfinished (a tar reader then sees it cut),
    /// since a member cannot be taken back.
    public func tar(roots: [String], to out: FileDescriptor, damaged: (FileProblem) -> Void,
                    warning: (String) -> Void) throws(QBError) {
        let fs = filesystem, buffer = self.buffer
        let writer = TarWriter(sink: out)
        try fs.walk(roots: roots, visit: { (node: FileNode) throws(QBError) -> Bool in
            guard var entry = node.tarEntry else {
                warning("\(node.name): socket not archived")
                return false
            }
            guard entry.kind == .regular else {
                try writer.append(entry)
                return true
            }
            let regions: [SparseRegion]
            do throws(QBError) {
                regions = try fs.dataRegions(of: node.inode)
            } catch {
                damaged(FileProblem(path: node.name, inode: node.inode.number, error: error))
                return false
            }
            let stored = regions.reduce(Int64(0)) { $0 + $1.length }
            if stored != entry.size {
                entry.sparseMap = try SparseMap(entries: regions, realSize: entry.size, storedSize: stored)
            }
            try writer.append(entry) { (emit: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) in
                do throws(DataCopyError) {
                    try fs.readContents(of: node.inode, buffer: buffer) { (offset: Int64, bytes: UnsafeRawBufferPointer) throws(QBError) in
                        try emit(offset, RawSpan(_unsafeBytes: bytes))
                    }
                } catch {
                    switch error {
                    case .source(let e): throw e.about(node.name)
                    case .destination(let e): throw e
                    }
                }
            }
            progress(Int(entry.size))
            return true
        }, damaged: damaged)
        try writer.finish()
    }
}
