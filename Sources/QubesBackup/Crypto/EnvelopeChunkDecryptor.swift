import Dispatch

/// Decrypts the chunks of one backed-up file of a version 4 backup, read as a
/// tar stream of `NAME.NNN.enc` members (what `qb-untar -i --tar` passes on),
/// and writes the concatenated plaintext in order.
///
/// Each chunk is authenticated whole before any of it is written; names and
/// order are checked by `ChunkSequence`, and every chunk must belong to the
/// same file. Key derivation dominates (about 4 s and 1 GiB per chunk with
/// Qubes' parameters), so up to `parallelism` chunks are derived and opened
/// at once while the oldest is written: memory stays bounded by
/// `parallelism` × the chunk size, plus the derivations' own memory.
public final class EnvelopeChunkDecryptor {
    public let backupID: String
    private let passphrase: Secret
    private let limits: ScryptLimits
    private let maximumChunkSize: Int
    private let parallelism: Int

    public init(backupID: String, passphrase: Secret, limits: ScryptLimits = .default,
                maximumChunkSize: Int = 1 << 30, parallelism: Int) {
        self.backupID = backupID
        self.passphrase = passphrase
        self.limits = limits
        self.maximumChunkSize = maximumChunkSize
        self.parallelism = max(1, parallelism)
    }

    /// One chunk in flight: its derivation and opening run on a worker.
    private final class Job: @unchecked Sendable {
        // @unchecked: `result` is written once by the worker before `done`
        // is signalled and read only after waiting on it.
        let name: ChunkName
        let done = DispatchSemaphore(value: 0)
        var result: Result<[UInt8], QBError> = .failure(QBError(.io(0), "chunk was not processed"))
        init(name: ChunkName) { self.name = name }
    }

    /// Reads every member of `reader` and writes the plaintext to `sink`,
    /// which is finished at the end. An empty stream is an error: a file has
    /// at least chunk 000.
    public func run(reader: TarReader, sink: ByteSink) throws(QBError) {
        var pending: [Job] = []
        do {
            try run(reader: reader, sink: sink, pending: &pending)
        } catch {
            // Workers may still be inside OpenSSL; let them finish before the
            // error unwinds to exit(), whose cleanup would pull OpenSSL's state
            // from under them.
            for job in pending { job.done.wait() }
            throw error
        }
    }

    private func run(reader: TarReader, sink: ByteSink, pending: inout [Job]) throws(QBError) {
        var sequence = ChunkSequence(layout: .envelopes)
        var file: String?
        let buffer = IOBuffer()

        func release(_ job: Job) throws(QBError) {
            job.done.wait()
            pending.removeFirst()
            let plaintext = try job.result.get()
            try sink.write(contentsOf: plaintext[...])
        }

        while let entry = try reader.next() {
            let name = try sequence.accept(entry.name)
            if let file, file != name.file {
                throw QBError(.malformed, "chunk of another file in the stream: \(entry.name)", subject: file,
                              hint: "select one file's chunks, e.g. qb-untar -i --tar '\(file).*'")
            }
            file = name.file
            guard entry.kind == .regular, entry.size <= Int64(maximumChunkSize) else {
                throw QBError(.limitExceeded, "chunk is larger than \(maximumChunkSize) bytes", subject: entry.name,
                              hint: "Qubes writes 100 MiB chunks; raise --max-size only for a backup you trust")
            }
            let collected = MemorySink(limit: maximumChunkSize)
            try reader.copyContents(to: collected, buffer: buffer)
            let envelope = collected.bytes
            let job = Job(name: name)
            let key = passphrase.bound(to: [backupID, name.chunk])
            let limits = self.limits
            DispatchQueue.global().async {
                job.result = Result { () throws(QBError) -> [UInt8] in
                    try ScryptFile.decrypt(envelope, passphrase: key, limits: limits, subject: name.description,
                                           wrongKeyHint: "wrong passphrase, or the chunk was renamed or comes from another backup")
                }
                job.done.signal()
            }
            pending.append(job)
            if pending.count >= parallelism { try release(pending[0]) }
        }
        guard file != nil else { throw QBError(.truncated, "no chunks in the input", hint: "the selection matched nothing") }
        while let oldest = pending.first { try release(oldest) }
        try sequence.finish()
        try sink.finish()
    }
}
