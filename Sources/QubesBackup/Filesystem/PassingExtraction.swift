/// Extraction of a filesystem whose image passes by instead of lying on
/// disk (a VM's private volume read from a backup without being written):
/// the same walk, the same extractor and the same damage reports as
/// `FilesystemExport.extract`, but regular files' data is written as the
/// image passes, in disk order, into files that get their names after.
///
/// First the walk makes every directory, link and special file, and every
/// regular file whose bytes are all in the metadata (inline data, blocks
/// the journal replaced); it notes where the others' data lies in the
/// image. Then one pass over the image writes that data with pwrite at its
/// offsets, into files under temporary names in the target directory. Then
/// each file is renamed into place, hard links made, directories' modes
/// and times set.
extension FilesystemExport {
    /// Where one piece of a file's data lies in the image.
    private struct Piece {
        var imageOffset: Int64
        var count: Int
        var file: Int
        var fileOffset: Int64
    }

    /// A regular file whose data comes in the pass.
    private struct PlannedFile {
        var entry: TarEntry
        var inode: UInt32
        var detached: TarExtractor.DetachedFile?
        var remaining: Int
        var lastWrite = 0
    }

    /// Bytes the plan holds per file and per piece, against the walk's budget.
    private static let plannedFileCost = 256
    private static let pieceCost = MemoryLayout<Piece>.stride

    /// Extracts `roots` (everything when empty) into `directory`, which must
    /// exist; the filesystem lies at `window` in the passing image, and
    /// `pass` runs one more pass over the image, giving each of its bytes,
    /// in order, to the function it is given. `extracted` hears of each
    /// file made, by path.
    public func extractPassing(roots: [String], into directory: String, options: TarExtractor.Options, window: ImageWindow,
                               pass: ((Int64, UnsafeRawBufferPointer) throws(QBError) -> Void) throws(QBError) -> Void,
                               damaged: (FileProblem) -> Void, warning: (String) -> Void,
                               extracted: (String) -> Void = { _ in }) throws(QBError) {
        let fs = filesystem
        let extractor = try TarExtractor(targetDirectory: directory, options: options)
        var files: [PlannedFile] = []
        var pieces: [Piece] = []
        var links: [TarEntry] = []
        var held = 0
        let budget = fs.options.walkMemoryBytes
        var discarded = false
        defer {
            // Files not placed (the output failed): their temporary names go.
            if !discarded { for file in files { if let d = file.detached { extractor.discard(d) } } }
        }

        func refusal(_ error: QBError, _ path: String, _ inode: UInt32) throws(QBError) {
            guard Self.isThisFilesProblem(error) else { throw error }
            damaged(FileProblem(path: path, inode: inode, error: error))
        }

        try fs.walk(roots: roots, visit: { (node: FileNode) throws(QBError) -> Bool in
            guard let entry = node.tarEntry else {
                warning("\(node.name): socket not extracted")
                return false
            }
            if entry.kind == .hardLink {
                links.append(entry)
                return true
            }
            if entry.kind == .regular {
                // Where its data is: in the image (then in the pass), or
                // in memory already (inline, replayed by the journal).
                var mine: [Piece] = []
                var early: [(Int64, [UInt8])] = []
                do throws(QBError) {
                    try fs.forEachPiece(of: node.inode) { (piece: FilePiece) throws(QBError) in
                        switch piece {
                        case .image(let offset, let imageOffset, let count):
                            mine.append(Piece(imageOffset: window.start + imageOffset, count: count, file: files.count, fileOffset: offset))
                        case .bytes(let offset, let bytes):
                            early.append((offset, bytes))
                        }
                    }
                } catch {
                    damaged(FileProblem(path: node.name, inode: node.inode.number, error: error))
                    return false
                }
                if !mine.isEmpty {
                    let cost = Self.plannedFileCost + entry.path.count + mine.count * Self.pieceCost
                    guard held + cost <= budget else {
                        damaged(FileProblem(path: node.name, inode: node.inode.number,
                                            error: QBError(.limitExceeded, "the list of files to write as the image passes is over the memory budget of \(budget >> 20) MiB; not extracted")))
                        return false
                    }
                    held += cost
                    var planned = PlannedFile(entry: entry, inode: node.inode.number, detached: nil,
                                              remaining: mine.reduce(0) { $0 + $1.count })
                    do throws(QBError) {
                        if !early.isEmpty {
                            let detached = try extractor.createDetached(member: node.name)
                            planned.detached = detached
                            for (offset, bytes) in early {
                                try bytes.span.bytes.withUnsafeBytes { (raw) throws(QBError) in
                                    try extractor.write(detached, at: offset, raw, member: node.name)
                                }
                            }
                            try extractor.closeDescriptor(detached, member: node.name)
                        }
                    } catch {
                        if let d = planned.detached { extractor.discard(d) }
                        try refusal(error, node.name, node.inode.number)
                        return false
                    }
                    files.append(planned)
                    pieces += mine
                    return true
                }
            }
            // Everything else is made now, as by `extract`.
            do throws(QBError) {
                let warnings = try extractor.extract(entry, contents: { (fd: Int32, name: String) throws(QBError) in
                    do throws(DataCopyError) {
                        try fs.copyContents(of: node.inode, to: fd, name: name, buffer: buffer)
                    } catch {
                        switch error {
                        case .source(let e), .destination(let e): throw e
                        }
                    }
                })
                for w in warnings { warning(w) }
            } catch {
                try refusal(error, node.name, node.inode.number)
                return false
            }
            if entry.kind == .regular { progress(Int(entry.size)) }
            extracted(node.name)
            return true
        }, damaged: damaged)

        try writePass(&files, pieces.sorted { $0.imageOffset < $1.imageOffset }, extractor: extractor, pass: pass)

        for index in files.indices {
            let name = files[index].entry.name
            do throws(QBError) {
                let detached: TarExtractor.DetachedFile
                if let made = files[index].detached { detached = made } else { detached = try extractor.createDetached(member: name) }
                files[index].detached = detached
                try extractor.place(detached, as: files[index].entry)
            } catch {
                if let d = files[index].detached { extractor.discard(d) }
                files[index].detached = nil
                try refusal(error, name, files[index].inode)
                continue
            }
            files[index].detached = nil
            progress(Int(files[index].entry.size))
            extracted(name)
        }
        discarded = true
        for link in links {
            do throws(QBError) {
                _ = try extractor.extract(link, contents: { (_: Int32, _: String) throws(QBError) in })
            } catch {
                try refusal(error, link.name, 0)
                continue
            }
            extracted(link.name)
        }
        try extractor.finish()
    }

    /// The pass: each byte of the image that a planned file holds is
    /// written at its place in that file. A file's descriptor is closed once
    /// its last piece is written, and the least recently written one when
    /// too many are open (a fragmented file's pieces can be far apart).
    private func writePass(_ files: inout [PlannedFile], _ pieces: [Piece], extractor: TarExtractor,
                           pass: ((Int64, UnsafeRawBufferPointer) throws(QBError) -> Void) throws(QBError) -> Void) throws(QBError) {
        guard !pieces.isEmpty else { return }
        let maximumOpen = 128
        var open = Set<Int>()
        var next = 0
        var writes = 0
        try pass { (offset: Int64, bytes: UnsafeRawBufferPointer) throws(QBError) in
            let end = offset + Int64(bytes.count)
            while next < pieces.count, pieces[next].imageOffset + Int64(pieces[next].count) <= offset { next += 1 }
            var index = next
            while index < pieces.count, pieces[index].imageOffset < end {
                let piece = pieces[index]
                index += 1
                let from = max(piece.imageOffset, offset), to = min(piece.imageOffset + Int64(piece.count), end)
                guard from < to else { continue }
                let file = piece.file, name = files[file].entry.name
                let detached: TarExtractor.DetachedFile
                if let made = files[file].detached { detached = made } else { detached = try extractor.createDetached(member: name) }
                files[file].detached = detached
                let slice = UnsafeRawBufferPointer(rebasing: bytes[Int(from - offset)..<Int(to - offset)])
                try extractor.write(detached, at: piece.fileOffset + (from - piece.imageOffset), slice, member: name)
                writes += 1
                files[file].lastWrite = writes
                files[file].remaining -= Int(to - from)
                if files[file].remaining <= 0 {
                    try extractor.closeDescriptor(detached, member: name)
                    open.remove(file)
                } else if open.insert(file).inserted, open.count > maximumOpen,
                          let oldest = open.min(by: { files[$0].lastWrite < files[$1].lastWrite }) {
                    try extractor.closeDescriptor(files[oldest].detached!, member: files[oldest].entry.name)
                    open.remove(oldest)
                }
            }
        }
        for file in open { try extractor.closeDescriptor(files[file].detached!, member: files[file].entry.name) }
    }
}
