#if canImport(Glibc)
import Glibc
#endif

/// A piece of a regular file's data: where it goes in the file and where
/// its bytes are. Holes are the gaps between pieces.
enum FilePiece {
    /// `count` bytes at `imageOffset` in the filesystem's window.
    case image(offset: Int64, imageOffset: Int64, count: Int)
    /// Bytes held in memory: inline data, or a block the journal replaced.
    case bytes(offset: Int64, [UInt8])
}

extension Ext4Filesystem {
    /// The file's data pieces in increasing offset order, clipped to its
    /// size; unwritten extents are holes. Encrypted files are refused:
    /// their bytes are ciphertext.
    func forEachPiece(of inode: Inode, _ body: (FilePiece) throws(QBError) -> Void) throws(QBError) {
        if inode.isEncrypted {
            throw QBError(.unsupported, "encrypted (fscrypt): contents not extracted", hint: "qb-fs has no key to decrypt it")
        }
        if inode.hasInlineData {
            let data = try inlineData(of: inode)
            if !data.isEmpty { try body(.bytes(offset: 0, data)) }
            return
        }
        let size = Int64(inode.size), bs = Int64(blockSize)
        try forEachRun(of: inode) { (run: DataRun) throws(QBError) in
            if run.unwritten { return }
            var offset = Int64(run.logical) * bs
            // Blocks the journal replaced come as bytes, the rest as
            // stretches of the image that can be copied as they are.
            try blocks.forEachSegment(run.physical, count: run.count) { (segment: BlockSegment) throws(QBError) in
                switch segment {
                case .image(let first, let count):
                    let n = min(Int64(count) * bs, size - offset)
                    if n > 0 { try body(.image(offset: offset, imageOffset: Int64(first) * bs, count: Int(n))) }
                    offset += Int64(count) * bs
                case .bytes(_, let bytes):
                    let n = min(bs, size - offset)
                    if n > 0 { try body(.bytes(offset: offset, Array(bytes[0..<Int(n)]))) }
                    offset += bs
                }
            }
        }
    }

    /// Where the file has data (offset and length, adjacent pieces joined),
    /// read from its map alone: the rest is holes.
    public func dataRegions(of inode: Inode) throws(QBError) -> [SparseRegion] {
        var regions: [SparseRegion] = []
        try forEachPiece(of: inode) { (piece: FilePiece) throws(QBError) in
            let (offset, count): (Int64, Int)
            switch piece {
            case .image(let o, _, let c): (offset, count) = (o, c)
            case .bytes(let o, let b): (offset, count) = (o, b.count)
            }
            if let last = regions.last, last.offset + last.length == offset {
                regions[regions.count - 1].length += Int64(count)
            } else {
                regions.append(SparseRegion(offset: offset, length: Int64(count)))
            }
        }
        return regions
    }

    /// Writes the file's data into `fd` at the same offsets, holes left
    /// unwritten (the caller sets the size).
    public func copyContents(of inode: Inode, to fd: Int32, name: String, buffer: UnsafeMutableRawBufferPointer) throws(DataCopyError) {
        // The body's own write failures are remembered here, so that the
        // error leaving forEachPiece can be told apart from the image's.
        var destinationFailure: QBError?
        do throws(QBError) {
            try forEachPiece(of: inode) { (piece: FilePiece) throws(QBError) in
                switch piece {
                case .image(let offset, let imageOffset, let count):
                    do throws(DataCopyError) {
                        try window.copy(at: imageOffset, count: count, to: fd, at: offset, buffer: buffer, targetName: name)
                    } catch {
                        switch error {
                        case .source(let e): throw e
                        case .destination(let e): destinationFailure = e; throw e
                        }
                    }
                case .bytes(let offset, let bytes):
                    do throws(QBError) {
                        try bytes.span.bytes.withUnsafeBytes { (raw) throws(QBError) in try writeAll(fd, raw, at: offset, name) }
                    } catch {
                        destinationFailure = error
                        throw error
                    }
                }
            }
        } catch {
            throw destinationFailure.map { .destination($0) } ?? .source(error)
        }
    }

    /// Calls `body` with the file's data in order, at most `buffer.count`
    /// bytes at a time, each with its offset in the file; holes are not
    /// passed. An error thrown by `body` comes back as `.destination`.
    public func readContents(of inode: Inode, buffer: UnsafeMutableRawBufferPointer,
                             _ body: (Int64, UnsafeRawBufferPointer) throws(QBError) -> Void) throws(DataCopyError) {
        var destinationFailure: QBError?
        func deliver(_ offset: Int64, _ bytes: UnsafeRawBufferPointer) throws(QBError) {
            do throws(QBError) { try body(offset, bytes) } catch { destinationFailure = error; throw error }
        }
        do {
            try forEachPiece(of: inode) { (piece: FilePiece) throws(QBError) in
                switch piece {
                case .image(let offset, let imageOffset, let count):
                    var done = 0
                    while done < count {
                        let n = min(buffer.count, count - done)
                        let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
                        try window.read(at: imageOffset + Int64(done), into: slice)
                        try deliver(offset + Int64(done), UnsafeRawBufferPointer(slice))
                        done += n
                    }
                case .bytes(let offset, let bytes):
                    try bytes.span.bytes.withUnsafeBytes { (raw) throws(QBError) in try deliver(offset, raw) }
                }
            }
        } catch {
            throw destinationFailure.map { .destination($0) } ?? .source(error)
        }
    }
}
