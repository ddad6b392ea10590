/// Decrypts the chunks of one backed-up file of a version 4 backup, read as a
/// tar stream of `NAME.NNN.enc` members (what `qb-untar -i --tar` passes on),
/// and writes the concatenated plaintext in order.
///
/// Each chunk is authenticated whole before any of it is written; names and
/// order are checked by `ChunkSequence`, and every chunk must belong to the
/// same file. Key derivation dominates (about 4 s and 1 GiB per chunk with
/// Qubes' parameters), so up to `parallelism` chunks are derived at once
/// while the oldest is written (`InOrderJobs`).
public final class EnvelopeChunkDecryptor {
    public let backupID: String
    private let opener: ChunkOpener
    private let maximumChunkSize: Int
    private let parallelism: Int

    public init(backupID: String, passphrase: Secret, limits: ScryptLimits = .default,
                maximumChunkSize: Int = 1 << 30, parallelism: Int) {
        self.backupID = backupID
        self.opener = .scrypt(backupID: backupID, passphrase: passphrase, limits: limits)
        self.maximumChunkSize = maximumChunkSize
        self.parallelism = parallelism
    }

    /// Reads every member of `reader` and writes the plaintext to `sink`,
    /// which is finished at the end. An empty stream is an error: a file has
    /// at least chunk 000.
    public func run(reader: TarReader, sink: ByteSink) throws(QBError) {
        try ChunkStream.release(ChunkReader(reader: reader, layout: .envelopes, maximumChunkSize: maximumChunkSize),
                                opener: opener, parallelism: parallelism, to: sink)
    }
}

/// Releases the authenticated chunks of one file, in order, to a sink: the
/// core of `qb-decrypt --chunks` (v4) and `qb-hmac --check` (v2/v3).
public enum ChunkStream {
    public static func release(_ chunks: ChunkReader, opener: ChunkOpener, parallelism: Int, to sink: ByteSink) throws(QBError) {
        let jobs = InOrderJobs(parallelism: parallelism)
        var file: String?
        do throws(QBError) {
            while let chunk = try chunks.next() {
                if let file, file != chunk.name.file {
                    throw QBError(.malformed, "chunk of another file in the stream: \(chunk.name)", subject: file,
                                  hint: "select one file's chunks, e.g. qb-untar -i --tar '\(file).*'")
                }
                file = chunk.name.file
                try jobs.submit({ () throws(QBError) -> [UInt8] in try opener.open(chunk) },
                                deliver: { (bytes: [UInt8]) throws(QBError) in try sink.write(contentsOf: bytes[...]) })
            }
            guard file != nil else { throw QBError(.truncated, "no chunks in the input", hint: "the selection matched nothing") }
            try jobs.drain()
        } catch {
            jobs.cancel()
            throw error
        }
        try sink.finish()
    }
}
