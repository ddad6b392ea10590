/// Where the inner archive of one backed-up file goes.
public struct InnerArchiveTarget: Sendable {
    /// Extract into this existing directory; nil reads the archive through
    /// (every check made, nothing written).
    public var directory: String?
    /// Names confined to the file's own tree, then moved (FORMAT.md §8.3).
    public var relocation: MemberRelocation
    /// Keep the contents of the regular members, up to this many bytes
    /// (qubes.xml); 0 keeps nothing.
    public var captureLimit: Int
    public var extraction: TarExtractor.Options
    /// Bounds on the inner archive (sparse map entries, names, headers).
    public var limits: TarLimits
    /// Takes the archive's regular file as it passes (a VM's private
    /// volume read without being written), instead of extracting it.
    public var image: InnerImageSink?

    public init(directory: String?, relocation: MemberRelocation, captureLimit: Int = 0,
                extraction: TarExtractor.Options = TarExtractor.Options(), limits: TarLimits = .default,
                image: InnerImageSink? = nil) {
        self.limits = limits
        self.image = image
        self.directory = directory
        self.relocation = relocation
        self.captureLimit = captureLimit
        self.extraction = extraction
    }
}

/// Where an inner archive's regular file goes when it is not written: a
/// VM's private volume read as it passes (`StreamedVolume`). Told of each
/// pass over it: its size first, then its bytes in increasing offsets
/// (holes do not pass), then its end.
public protocol InnerImageSink: AnyObject, Sendable {
    func begin(size: Int64, name: String) throws(QBError)
    func pass(_ offset: Int64, _ bytes: UnsafeRawBufferPointer) throws(QBError)
    func end() throws(QBError)
}

/// What reading one inner archive gave.
public struct InnerArchiveResult: Sendable {
    public var captured: [UInt8] = []
    /// Things not restored (devices, FIFOs), one line each.
    public var warnings: [String] = []
}

/// The stages one backed-up file's authenticated chunks go through, in one
/// process and all at once: [decrypt (v2/v3)] → [decompress] → inner tar
/// reader and extractor, the last on a thread of its own behind a
/// `ByteChannel` (FORMAT.md §11, the "streaming" column).
///
/// v3/v4 chunks are pieces of one stream; a v2 chunk is a tar volume of its
/// own, decrypted and decompressed alone (§8.4).
final class FilePipeline {
    let file: String
    private let header: BackupHeader
    private let passphrase: Secret
    private let decompression: DecompressionOptions
    private let blockSize: Int
    private let channel: ByteChannel
    private let perChunkVolumes: Bool
    private var consumer: WorkerThread<InnerArchiveResult>?
    private var stream: ByteSink?

    init(file: String, header: BackupHeader, passphrase: Secret, decompression: DecompressionOptions,
         blockSize: Int, target: InnerArchiveTarget) throws(QBError) {
        self.file = file
        self.header = header
        self.passphrase = passphrase
        self.decompression = decompression
        let blockSize = Swift.max(blockSize, 4096)
        self.blockSize = blockSize
        // Blocks of the inner reader's buffer size, so that blocks are
        // handed to it rather than copied into it.
        self.channel = ByteChannel(blockSize: blockSize)
        self.perChunkVolumes = header.version == 2
        let channel = self.channel
        let volumes = perChunkVolumes
        consumer = try WorkerThread { () throws(QBError) -> InnerArchiveResult in
            defer { channel.stopReading() }
            let options = TarReader.Options(limits: target.limits)
            let reader = volumes ? TarReader(volumes: channel.volumes, options: options, bufferSize: blockSize)
                : TarReader(source: channel.source, options: options, bufferSize: blockSize)
            return try Self.readInnerArchive(reader, target: target, bufferSize: blockSize)
        }
        if !perChunkVolumes { stream = try stages(into: channel) }
    }

    /// A pipeline dropped without finish() or fail() (another file's error
    /// unwound past it) must not leave its reader thread waiting forever.
    deinit {
        if let consumer {
            channel.abort(QBError(.cancelled, "restore stopped", subject: file))
            _ = consumer.join()
        }
    }

    /// decrypt → decompress → `downstream`, as the header says.
    private func stages(into downstream: ByteSink) throws(QBError) -> ByteSink {
        var sink = downstream
        if header.compressed, let filter = header.compressionFilter {
            sink = makeDecompressor(filter, downstream: sink, options: decompression)
        }
        if header.encrypted && header.version < 4 {
            sink = try OpenSSLEncDecryptor(cipher: header.cryptoAlgorithm ?? "aes-256-cbc", digest: "md5",
                                           passphrase: passphrase, downstream: sink, sliceSize: blockSize)
        }
        return sink
    }

    /// Takes the next authenticated (v4: decrypted) chunk, lent in place.
    func deliver(_ bytes: borrowing [UInt8]) throws(QBError) {
        do throws(QBError) {
            if let stream {
                try stream.write(bytes.span.bytes)
            } else {
                let volume = try stages(into: ChannelVolumeSink(channel))
                try volume.write(bytes.span.bytes)
                try volume.finish()
            }
        } catch {
            throw fail(error)
        }
    }

    /// Ends the file: the stages check their trailers, the inner archive its end.
    func finish() throws(QBError) -> InnerArchiveResult {
        do throws(QBError) {
            if let stream { try stream.finish() } else { try channel.finish() }
        } catch {
            throw fail(Self.missingLastChunk(error, header: header) ?? error)
        }
        guard let consumer else { throw QBError(.internalError, "file pipeline finished twice", subject: file) }
        self.consumer = nil
        return try consumer.join().get()
    }

    /// Stops both sides after `error` and returns the error to report: the
    /// inner reader's own when it stopped first.
    func fail(_ error: QBError) -> QBError {
        channel.abort(error)
        guard let consumer else { return error }
        self.consumer = nil
        let inner = consumer.join()
        if error.kind == .cancelled, case .failure(let innerError) = inner {
            return innerError.about(file)
        }
        return error.about(file)
    }

    /// Bad padding at the end of a v3 file's one encrypted stream, whose
    /// every chunk was authenticated (and the passphrase with the header),
    /// means the stream was cut at a chunk boundary: its last chunks are
    /// missing, which nothing in the format records (FORMAT.md §5.2). Said
    /// so, rather than "wrong passphrase" as `openssl enc` would.
    private static func missingLastChunk(_ error: QBError, header: BackupHeader) -> QBError? {
        guard error.kind == .authentication, header.version == 3, header.encrypted else { return nil }
        return QBError(.truncated, "the file ends before its last chunk (its encrypted stream ends without padding)",
                       hint: "the backup was cut short, or its last chunks removed")
    }

    private static func readInnerArchive(_ reader: TarReader, target: InnerArchiveTarget,
                                         bufferSize: Int) throws(QBError) -> InnerArchiveResult {
        var result = InnerArchiveResult()
        let extractor = try target.directory.map { (d) throws(QBError) in try TarExtractor(targetDirectory: d, options: target.extraction) }
        let buffer = IOBuffer(capacity: bufferSize)
        while let stored = try reader.next() {
            guard let entry = try target.relocation.relocate(stored) else { continue }
            if let sink = target.image, entry.kind == .regular {
                try sink.begin(size: entry.size, name: entry.name)
                while try reader.readFragment({ (offset: Int64, bytes: RawSpan) throws(QBError) in
                    try bytes.withUnsafeBytes { (raw) throws(QBError) in try sink.pass(offset, raw) }
                }) {}
                try sink.end()
            } else if let extractor {
                result.warnings += try extractor.extract(entry, from: reader)
            } else if target.captureLimit > 0 && entry.kind == .regular {
                let sink = MemorySink(limit: target.captureLimit - result.captured.count)
                try reader.copyContents(to: sink, buffer: buffer)
                result.captured += sink.bytes
            } else {
                // Read the stored data through (holes cost nothing), so that
                // sizes and the archive's end are checked too.
                while try reader.readFragment({ (_, _) throws(QBError) in }) {}
            }
        }
        try extractor?.finish()
        return result
    }
}

