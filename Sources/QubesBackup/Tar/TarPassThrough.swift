/// Passes selected members of an archive on as a new archive: each member's
/// raw header blocks (its PAX and GNU meta members included), its stored
/// data and zero padding, byte for byte; `finish()` adds the two zero
/// blocks that end a tar archive. Members of a multi-volume archive come out
/// joined, without their continuation headers.
public final class TarPassThrough {
    private let sink: ByteSink
    private let zeros = [UInt8](repeating: 0, count: 1024)

    public init(sink: ByteSink) { self.sink = sink }

    /// Copies the reader's current member, which must be `entry`, just
    /// returned by `next()` and not yet read.
    public func copy(_ entry: TarEntry, from reader: TarReader) throws(QBError) {
        let header = entry.rawHeader
        try sink.write(header.span.bytes)
        let sink = self.sink
        while try reader.readFragment({ (_, bytes: RawSpan) throws(QBError) in try sink.write(bytes) }) {}
        let pad = TarHeaderBlock.padding(after: entry.storedSize)
        if pad > 0 { try sink.write(contentsOf: zeros[0..<pad]) }
    }

    /// Ends the archive and finishes the sink.
    public func finish() throws(QBError) {
        try sink.write(contentsOf: zeros[...])
        try sink.finish()
    }
}

extension TarReader {
    /// Writes the rest of the current member's logical content (holes as
    /// zeros) to `sink`, without finishing it.
    public func copyContents(to sink: ByteSink, buffer: IOBuffer) throws(QBError) {
        while true {
            buffer.clear()
            let n = try read(into: buffer)
            if n == 0 { return }
            try buffer.withReadable { (bytes: RawSpan) throws(QBError) in try sink.write(bytes) }
        }
    }
}
