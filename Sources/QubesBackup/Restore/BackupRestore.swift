/// Tuning and limits of a restore.
public struct RestoreOptions: Sendable {
    /// Chunks authenticated (v4: derived and decrypted) at once.
    public var parallelism: Int
    /// Largest chunk held in memory while it is authenticated.
    public var maximumChunkSize: Int
    public var scryptLimits: ScryptLimits
    public var decompression: DecompressionOptions
    /// Size of the read buffers of the outer and inner tar readers and of
    /// the slices decrypted at once (the decoders' output block is
    /// `decompression.blockSize`). Smaller costs more calls, not safety.
    public var blockSize: Int

    public init(parallelism: Int, maximumChunkSize: Int = 1 << 30, scryptLimits: ScryptLimits = .default,
                decompression: DecompressionOptions = DecompressionOptions(), blockSize: Int = IOBuffer.defaultCapacity) {
        self.parallelism = parallelism
        self.maximumChunkSize = maximumChunkSize
        self.scryptLimits = scryptLimits
        self.decompression = decompression
        self.blockSize = blockSize
    }
}

/// What a restore tells its caller as it goes; the library prints nothing.
public protocol RestoreObserver: AnyObject {
    /// A backed-up file's first chunk was authenticated and its stages started.
    func fileStarted(_ file: String)
    /// A backed-up file was read to its proper end (and extracted, if asked).
    func fileFinished(_ file: String)
    /// Something was not restored, or the backup is unusual but acceptable.
    func warning(_ text: String)
}

/// One backup, read in one pass from the start of its outer stream
/// (FORMAT.md §5.3 order): the header is authenticated and validated, then
/// `qubes.xml`, then each backed-up file is authenticated chunk by chunk and
/// streamed through its stages. Everything here is built from the same
/// library stages the small tools use; this type only orders them.
public final class BackupRestore {
    public let options: RestoreOptions
    private let passphrase: Secret
    private let reader: TarReader
    private weak var observer: RestoreObserver?

    public private(set) var header: BackupHeader?
    public private(set) var authentication: AuthenticationMethod?
    private var chunks: ChunkReader?
    private var opener: ChunkOpener?
    /// How many chunks qubes.xml had.
    public private(set) var qubesXMLChunks = 0
    /// The next chunk, read ahead of its turn: after qubes.xml's last one,
    /// before routes were known; or qubes.xml's first, during the header's
    /// key derivation. A failure to read it is reported in its turn.
    private var lookahead: Result<StoredChunk?, QBError>?
    /// v4: qubes.xml's first chunk, opened while the header's own key was
    /// derived, and the backup-id it was opened under.
    private var speculation: (backupID: String, opened: WorkerThread<[UInt8]>)?

    public init(source: ByteSource, passphrase: Secret, options: RestoreOptions, observer: RestoreObserver? = nil) {
        self.reader = TarReader(source: source, options: .init(ignoreZeros: true), bufferSize: options.blockSize)
        self.passphrase = passphrase
        self.options = options
        self.observer = observer
    }

    /// Reads, authenticates and validates `backup-header` (FORMAT.md §4, §5).
    public func readHeader() throws(QBError) -> BackupHeader {
        let headerBytes = try readSmallMember(named: "backup-header", limit: BackupHeader.maximumSize)
        let macBytes = try readSmallMember(named: "backup-header.hmac", limit: DigestLine.maximumFileSize)
        if ScryptEnvelope.hasMagic(macBytes), options.parallelism > 1 { startSpeculation(headerBytes) }
        let method: AuthenticationMethod
        let header: BackupHeader
        do throws(QBError) {
            method = try HeaderAuthentication.verify(header: headerBytes, hmacFile: macBytes, passphrase: passphrase)
            header = try BackupHeader(parsing: headerBytes)
            try HeaderAuthentication.checkConsistency(header, method: method)
        } catch {
            discardSpeculation()
            throw error
        }
        if speculation?.backupID != header.backupID { discardSpeculation() }
        for warning in header.warnings { observer?.warning("backup-header: " + warning) }
        switch method {
        case .scrypt:
            guard let id = header.backupID else {
                throw QBError(.malformed, "version 4 header without backup-id", subject: "backup-header")
            }
            opener = .scrypt(backupID: id, passphrase: passphrase, limits: options.scryptLimits)
        case .hmac(let digest):
            opener = .hmac(digest: digest, passphrase: passphrase)
        }
        if chunks == nil {
            chunks = ChunkReader(reader: reader, layout: header.version == 4 ? .envelopes : .hmacPairs,
                                 maximumChunkSize: options.maximumChunkSize, bufferSize: options.blockSize)
        }
        self.header = header
        self.authentication = method
        return header
    }

    /// Key derivation, not data, bounds a v4 restore, and qubes.xml's key
    /// would otherwise wait for the header's: with a second core, its first
    /// chunk is read and opened now, under the backup-id the header claims.
    /// The guess is used only if the header then authenticates with that
    /// backup-id. Until then nothing from the header is believed: the claim
    /// is only a KDF input, and the work is bounded by the same scrypt limits
    /// every chunk's unauthenticated envelope header already is.
    private func startSpeculation(_ headerBytes: [UInt8]) {
        guard let backupID = BackupHeader.claimedBackupID(in: headerBytes) else { return }
        let early = ChunkReader(reader: reader, layout: .envelopes, maximumChunkSize: options.maximumChunkSize,
                                bufferSize: options.blockSize)
        chunks = early
        let next = Result { () throws(QBError) -> StoredChunk? in try early.next() }
        lookahead = next
        guard case .success(let chunk?) = next, chunk.name.file == "qubes.xml" else { return }
        let opener = ChunkOpener.scrypt(backupID: backupID, passphrase: passphrase, limits: options.scryptLimits)
        if let thread = try? WorkerThread({ () throws(QBError) -> [UInt8] in try opener.open(chunk) }) {
            speculation = (backupID, thread)
        }
    }

    /// Waits for a guess no longer wanted (its thread may be inside OpenSSL)
    /// and forgets it.
    private func discardSpeculation() {
        _ = speculation?.opened.join()
        speculation = nil
    }

    /// The next chunk of the outer stream, the one read ahead first.
    private func nextChunk(keep: (ChunkName) throws(QBError) -> Bool = { _ in true }) throws(QBError) -> StoredChunk? {
        if let early = lookahead {
            lookahead = nil
            return try early.get()
        }
        return try chunks!.next(keep: keep)
    }

    /// Opens a chunk, with the key derived ahead when there is one.
    private func open(_ chunk: StoredChunk, with opener: ChunkOpener) throws(QBError) -> [UInt8] {
        if let guess = speculation, chunk.name.file == "qubes.xml", chunk.name.index == 0 {
            speculation = nil
            return try guess.opened.join().get()
        }
        return try opener.open(chunk)
    }

    private func readSmallMember(named name: String, limit: Int) throws(QBError) -> [UInt8] {
        guard let entry = try reader.next() else {
            throw QBError(.truncated, "the backup ends before \(name)", subject: name)
        }
        guard entry.name == name else {
            if name == "backup-header", (try? ChunkName(parsing: entry.name))?.file == "qubes.xml" {
                throw QBError(.unsupported, "backup without a header (Qubes R2 beta): not supported", subject: entry.name)
            }
            throw QBError(.malformed, "expected \(name), found \(entry.name)", subject: entry.name,
                          hint: "a Qubes backup starts with backup-header and backup-header.hmac")
        }
        try ChunkReader.checkRegular(entry)
        return try readAll(from: MemberContents(reader), limit: limit, what: name)
    }

    /// Authenticates and reads `qubes.xml`, which follows the header, and
    /// returns its VMs (FORMAT.md §9); nil when the backup has none there.
    public func readVMList() throws(QBError) -> [VMEntry]? {
        guard let opener, let header else { throw QBError(.usage, "read the header first") }
        var next = try nextChunk()
        guard next?.name.file == "qubes.xml" else {
            lookahead = .success(next)
            observer?.warning("no qubes.xml after the header: VMs are known only by their backup directory (vm3, …)")
            return nil
        }
        let pipeline = try FilePipeline(file: "qubes.xml", header: header, passphrase: passphrase, decompression: options.decompression,
                                        blockSize: options.blockSize, target: InnerArchiveTarget(directory: nil,
                                                                   relocation: try MemberRelocation(within: "qubes.xml", stripComponents: 0),
                                                                   captureLimit: XMLDocument.maximumSize))
        do throws(QBError) {
            while let chunk = next, chunk.name.file == "qubes.xml" {
                qubesXMLChunks += 1
                try pipeline.deliver(try open(chunk, with: opener))
                next = try nextChunk()
            }
            lookahead = .success(next)
        } catch {
            throw pipeline.fail(error)
        }
        let xml = try pipeline.finish().captured
        return try QubesXML.parseVMs(xml)
    }

    /// What to do with one backed-up file.
    public enum Route: Sendable {
        /// Read past it: its chunk names are checked, nothing else.
        case skip
        /// Authenticate, decrypt, decompress and read its inner archive; with
        /// a directory, extract it there.
        case stream(InnerArchiveTarget)
    }

    /// Reads the rest of the backup, file by file, doing with each what
    /// `route` says. Returns the files met, with their chunk counts, in order.
    @discardableResult
    public func processFiles(route: (String) throws(QBError) -> Route) throws(QBError) -> [(file: String, chunks: Int)] {
        guard let chunks, let opener, let header else { throw QBError(.usage, "read the header and qubes.xml first") }
        // qubes.xml was never read: the guess is not needed.
        discardSpeculation()
        let jobs = InOrderJobs(parallelism: options.parallelism)
        var files: [(file: String, chunks: Int)] = []
        var current: FilePipeline?
        var routes: [String: Route] = [:]
        func decide(_ file: String) throws(QBError) -> Route {
            if let known = routes[file] { return known }
            let decided = try route(file)
            routes[file] = decided
            return decided
        }
        let observer = self.observer

        func close(_ pipeline: FilePipeline) {
            jobs.then { () throws(QBError) in
                let result = try pipeline.finish()
                for w in result.warnings { observer?.warning(w) }
                observer?.fileFinished(pipeline.file)
            }
        }

        do throws(QBError) {
            var next = try nextChunk()
            while let chunk = next {
                next = nil
                let file = chunk.name.file
                if files.last?.file != file {
                    if let current { close(current) }
                    current = nil
                    files.append((file, 0))
                    if case .stream(let target) = try decide(file) {
                        current = try FilePipeline(file: file, header: header, passphrase: passphrase,
                                                   decompression: options.decompression, blockSize: options.blockSize,
                                                   target: target)
                        let started = current!
                        jobs.then { observer?.fileStarted(started.file) }
                    }
                }
                files[files.count - 1].chunks += 1
                if let pipeline = current {
                    let handoff = ChunkHandoff(consume chunk)
                    try jobs.submit({ () throws(QBError) -> [UInt8] in try opener.open(handoff.take()) },
                                    deliver: { (bytes: consuming [UInt8]) throws(QBError) in
                                        try pipeline.deliver(bytes)
                                        chunks.recycle(bytes)
                                    })
                }
                next = try chunks.next(keep: { (name) throws(QBError) -> Bool in
                    if case .stream = try decide(name.file) { return true }
                    return false
                })
            }
            if let current { close(current) }
            current = nil
            try jobs.drain()
        } catch {
            jobs.cancel()
            if let current { throw current.fail(error) }
            throw error
        }
        return files
    }
}
