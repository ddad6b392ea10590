/// Tuning and limits of a restore.
public struct RestoreOptions: Sendable {
    /// The most chunks authenticated (v4: derived and decrypted) at once;
    /// nil: as many as the CPUs this process may use. Fewer when memory
    /// does not pay for that many (`JobPlan`).
    public var parallelism: Int?
    /// What the job plan is made from; nil: the machine, read when the
    /// header's scrypt parameters are known.
    public var resources: SystemResources?
    /// Largest chunk held in memory while it is authenticated.
    public var maximumChunkSize: Int
    /// v4: where the keys that opened chunks are kept, when the caller
    /// will read some of them again (`BackupRereader`); nil: not kept.
    public var chunkKeys: ScryptKeyCache?
    public var scryptLimits: ScryptLimits
    public var decompression: DecompressionOptions
    /// Size of the read buffers of the outer and inner tar readers and of
    /// the slices decrypted at once (the decoders' output block is
    /// `decompression.blockSize`). Smaller costs more calls, not safety.
    public var blockSize: Int

    public init(parallelism: Int?, maximumChunkSize: Int = ChunkSizeLimit.defaultMaximum, scryptLimits: ScryptLimits = .affordable(),
                decompression: DecompressionOptions = DecompressionOptions(), blockSize: Int = IOBuffer.defaultCapacity,
                resources: SystemResources? = nil) {
        self.parallelism = parallelism
        self.resources = resources
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
    /// How many chunks will be worked on at once, and why; told once, when
    /// the header's authentication (v4: its scrypt parameters) is known.
    func jobsPlanned(_ plan: JobPlan)
    /// An allocation was refused while several jobs ran: `jobs` at once
    /// from now on.
    func jobsLowered(to jobs: Int)
}

extension RestoreObserver {
    public func jobsPlanned(_ plan: JobPlan) {}
    public func jobsLowered(to jobs: Int) {}
}

/// One backup, read in one pass from the start of its outer stream, in
/// the order FORMAT.md §5.3 requires, which the types carry: each step
/// consumes the value it is called on and returns the one that can take
/// the next step, so no step can be skipped or repeated.
///
///     let header = try BackupRestore(source: …).readHeader()  // authenticated, validated
///     let files = try header.readVMList()                    // qubes.xml, authenticated
///     try files.process { file in … }                        // every backed-up file
///
/// Everything here is built from the same library stages the small tools
/// use; these types only order them.
public struct BackupRestore: ~Copyable {
    private let context: RestoreContext

    public init(source: ByteSource, passphrase: Secret, options: RestoreOptions, observer: RestoreObserver? = nil) {
        context = RestoreContext(reader: TarReader(source: source, options: .init(ignoreZeros: true), bufferSize: options.blockSize),
                                 passphrase: passphrase, options: options, observer: observer)
    }

    /// What to do with one backed-up file.
    public enum Route: Sendable {
        /// Read past it: its chunk names are checked, nothing else.
        case skip
        /// Authenticate, decrypt, decompress and read its inner archive; with
        /// a directory, extract it there.
        case stream(InnerArchiveTarget)
    }

    /// Reads, authenticates and validates `backup-header` (FORMAT.md §4, §5).
    public consuming func readHeader() throws(QBError) -> AuthenticatedHeader {
        let context = self.context
        let headerBytes = try context.readSmallMember(named: "backup-header", limit: BackupHeader.maximumSize)
        let macBytes = try context.readSmallMember(named: "backup-header.hmac", limit: DigestLine.maximumFileSize)
        let options = context.options
        // The header's envelope carries the scrypt parameters Qubes used for
        // every chunk: the first moment the memory per job is known. Not yet
        // authenticated, but checked against the same limits as any chunk's.
        let isEnvelope = ScryptEnvelope.hasMagic(macBytes)
        let scryptMemory = isEnvelope ? ScryptHeader.memory(of: macBytes, limits: options.scryptLimits) : nil
        let plan = JobPlan(maximum: options.parallelism, resources: options.resources ?? .current(),
                           memoryPerJob: JobPlan.memoryPerJob(scryptMemory: scryptMemory, maximumChunkSize: options.maximumChunkSize))
        context.observer?.jobsPlanned(plan)
        let slots = JobSlots(plan: plan)
        var early: ReadAhead?
        if isEnvelope, plan.jobs > 1 {
            early = ReadAhead(context: context, headerBytes: headerBytes, slots: slots)
        }
        let method: AuthenticationMethod
        let header: BackupHeader
        do throws(QBError) {
            method = try HeaderAuthentication.verify(header: headerBytes, hmacFile: macBytes, passphrase: context.passphrase,
                                                     limits: options.scryptLimits, slots: slots)
            header = try BackupHeader(parsing: headerBytes)
            try HeaderAuthentication.checkConsistency(header, method: method)
        } catch {
            early?.discardGuess()
            throw error
        }
        if early?.guess?.backupID != header.backupID { early?.discardGuess() }
        for warning in header.warnings { context.observer?.warning("backup-header: " + warning) }
        let opener: ChunkOpener
        switch method {
        case .scrypt:
            guard let id = header.backupID else {
                throw QBError(.malformed, "version 4 header without backup-id", subject: "backup-header")
            }
            opener = .scrypt(backupID: id, passphrase: context.passphrase, limits: context.options.scryptLimits, keys: context.options.chunkKeys)
        case .hmac(let digest):
            opener = .hmac(digest: digest, passphrase: context.passphrase)
        }
        let ahead = early ?? ReadAhead(chunks: ChunkReader(reader: context.reader, layout: header.version == 4 ? .envelopes : .hmacPairs,
                                                          maximumChunkSize: context.options.maximumChunkSize))
        return AuthenticatedHeader(read: HeaderRead(header: header, authentication: method), context: context, opener: opener,
                                   slots: slots, ahead: ahead)
    }
}

/// A backup whose header was authenticated and validated; `qubes.xml` is next.
public struct AuthenticatedHeader: ~Copyable {
    fileprivate let read: HeaderRead
    public var header: BackupHeader { read.header }
    public var authentication: AuthenticationMethod { read.authentication }
    fileprivate let context: RestoreContext
    fileprivate let opener: ChunkOpener
    fileprivate let slots: JobSlots
    fileprivate var ahead: ReadAhead

    /// Authenticates and reads `qubes.xml`, which follows the header, and
    /// what it says of the VMs (FORMAT.md §9).
    public consuming func readVMList() throws(QBError) -> BackupFiles {
        let context = self.context
        // Names first: the chunk after qubes.xml's last is a VM's, whose
        // data waits for its route (and --list never reads it).
        guard try ahead.nextName()?.file == "qubes.xml" else {
            ahead.discardGuess()
            context.observer?.warning("no qubes.xml after the header: VMs are known only by their backup directory (vm3, …)")
            return BackupFiles(headerRead: read, list: VMListRead(vms: nil, qubesXMLChunks: 0),
                               context: context, opener: opener, slots: slots, chunks: ahead.chunks)
        }
        let pipeline = try FilePipeline(file: "qubes.xml", header: header, passphrase: context.passphrase,
                                        decompression: context.options.decompression, blockSize: context.options.blockSize,
                                        target: InnerArchiveTarget(directory: nil,
                                                                   relocation: try MemberRelocation(within: "qubes.xml", stripComponents: 0),
                                                                   captureLimit: XMLDocument.maximumSize))
        var chunkCount = 0
        do throws(QBError) {
            while try ahead.nextName()?.file == "qubes.xml" {
                chunkCount += 1
                try pipeline.deliver(try ahead.open(try ahead.take(), with: opener, slots: slots))
            }
        } catch {
            throw pipeline.fail(error)
        }
        ahead.discardGuess()
        let xml = try pipeline.finish().captured
        return BackupFiles(headerRead: read, list: VMListRead(vms: try QubesXML.parseVMs(xml), qubesXMLChunks: chunkCount),
                           context: context, opener: opener, slots: slots, chunks: ahead.chunks)
    }
}

/// A backup whose header and `qubes.xml` were read; the backed-up files are next.
public struct BackupFiles: ~Copyable {
    fileprivate let headerRead: HeaderRead
    fileprivate let list: VMListRead
    public var authentication: AuthenticationMethod { headerRead.authentication }
    /// The VMs `qubes.xml` lists; nil when the backup has no qubes.xml.
    public var vms: [VMEntry]? { list.vms }
    /// How many chunks qubes.xml had.
    public var qubesXMLChunks: Int { list.qubesXMLChunks }
    fileprivate let context: RestoreContext
    fileprivate let opener: ChunkOpener
    fileprivate let slots: JobSlots
    /// Its next name may already be read (the end of qubes.xml was found
    /// by it); the chunk's data is not.
    fileprivate let chunks: ChunkReader

    /// How to read a file of this backup again, in a later pass over the
    /// backup file (`BackupRereader`).
    public var rereader: BackupRereader {
        BackupRereader(header: headerRead.header, passphrase: context.passphrase, options: context.options, opener: opener,
                       slots: slots, observer: context.observer)
    }

    /// Reads the rest of the backup, file by file, doing with each what
    /// `route` says; `located` hears where each file's first chunk starts
    /// in the input. Returns the files met, with their chunk counts, in order.
    @discardableResult
    public consuming func process(route: (String) throws(QBError) -> BackupRestore.Route,
                                  located: (String, Int64) -> Void = { _, _ in }) throws(QBError) -> [(file: String, chunks: Int)] {
        let context = self.context, chunks = self.chunks, opener = self.opener, header = self.headerRead.header
        let options = context.options
        let observer = context.observer
        let jobs = InOrderJobs(slots: slots, limitLowered: { observer?.jobsLowered(to: $0) })
        var files: [(file: String, chunks: Int)] = []
        var current: FilePipeline?
        var routes: [String: BackupRestore.Route] = [:]
        func decide(_ file: String) throws(QBError) -> BackupRestore.Route {
            if let known = routes[file] { return known }
            let decided = try route(file)
            routes[file] = decided
            return decided
        }

        func close(_ pipeline: FilePipeline) {
            jobs.then { () throws(QBError) in
                let result = try pipeline.finish()
                for w in result.warnings { observer?.warning(w) }
                observer?.fileFinished(pipeline.file)
            }
        }

        do throws(QBError) {
            while let name = try chunks.nextName() {
                let file = name.file
                if files.last?.file != file {
                    if let current { close(current) }
                    current = nil
                    files.append((file, 0))
                    let decision = try decide(file)
                    located(file, chunks.memberOffset)
                    if case .stream(let target) = decision {
                        current = try FilePipeline(file: file, header: header, passphrase: context.passphrase,
                                                   decompression: options.decompression, blockSize: options.blockSize,
                                                   target: target)
                        let started = current!
                        jobs.then { observer?.fileStarted(started.file) }
                    }
                }
                files[files.count - 1].chunks += 1
                // A file not streamed is passed over: its names are
                // checked, its data skipped where the input can seek.
                let chunk = try chunks.take(keep: current != nil)
                if let pipeline = current {
                    try jobs.open(chunk, with: opener, into: pipeline, recycling: chunks)
                }
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

/// Reads one backed-up file again from the backup file, in a later pass
/// (a VM's private volume read without being written, whose filesystem
/// needs blocks that passed before anything said they were needed): from
/// its first chunk, every chunk is authenticated again, decrypted,
/// decompressed and its inner archive read, exactly as in the first pass —
/// with the keys of the first pass where `RestoreOptions.chunkKeys` kept
/// them: a v4 chunk's envelope is checked again, its key not derived again.
public struct BackupRereader {
    fileprivate let header: BackupHeader
    fileprivate let passphrase: Secret
    fileprivate let options: RestoreOptions
    fileprivate let opener: ChunkOpener
    fileprivate let slots: JobSlots
    fileprivate let observer: RestoreObserver?

    /// Reads `file`'s `count` chunks from the member at `offset` of
    /// `source` (the backup file, open anew and seekable) into `target`.
    /// A backup that changed since the first pass is refused: a chunk of
    /// another name, or fewer chunks.
    public func reread(_ file: String, chunks count: Int, at offset: Int64, from source: FileDescriptor,
                       into target: InnerArchiveTarget) throws(QBError) {
        try source.seek(to: offset)
        let reader = TarReader(source: source, options: .init(ignoreZeros: true), bufferSize: options.blockSize)
        let chunks = ChunkReader(reader: reader, layout: header.version == 4 ? .envelopes : .hmacPairs,
                                 maximumChunkSize: options.maximumChunkSize)
        let pipeline = try FilePipeline(file: file, header: header, passphrase: passphrase, decompression: options.decompression,
                                        blockSize: options.blockSize, target: target)
        let observer = self.observer
        let jobs = InOrderJobs(slots: slots, limitLowered: { observer?.jobsLowered(to: $0) })
        let opener = self.opener
        do throws(QBError) {
            for index in 0..<count {
                guard let name = try chunks.nextName(), name.file == file, name.index == index else {
                    throw QBError(.malformed, "the backup changed since it was first read: chunk \(index) of \(file) is not where it was",
                                  subject: file, hint: "read it again from the start")
                }
                try jobs.open(try chunks.take(keep: true), with: opener, into: pipeline, recycling: chunks)
            }
            try jobs.drain()
            _ = try pipeline.finish()
        } catch {
            jobs.cancel()
            throw pipeline.fail(error)
        }
    }
}

extension InOrderJobs {
    /// Opens `chunk` on a worker and hands its bytes to `pipeline` in
    /// order, then their memory back to `chunks`. Handed over, not copied:
    /// a second reference to the chunk's bytes would make a v4 chunk's
    /// in-place decryption copy them.
    fileprivate func open(_ chunk: consuming StoredChunk, with opener: ChunkOpener, into pipeline: FilePipeline,
                          recycling chunks: ChunkReader) throws(QBError) {
        let memory = opener.memory(of: chunk)
        let handoff = ChunkHandoff(consume chunk)
        try submit(memory: memory, { (slots) throws(QBError) -> [UInt8] in try opener.open(handoff.take(), slots: slots) },
                   deliver: { (bytes: consuming [UInt8]) throws(QBError) in
                       try pipeline.deliver(bytes)
                       chunks.recycle(bytes)
                   })
    }
}

// What the steps found is kept in objects, and the steps' public
// properties read it from them: in release builds of Swift 6.3, a value
// read from a stored property of a noncopyable step and still used after
// the step was consumed was not retained — qb-restore --verify-only read
// qubes.xml's VM list after `process` had freed it and crashed in about
// one run of two. A value loaded from an object is always retained.

/// The header, authenticated and validated.
private final class HeaderRead: Sendable {
    let header: BackupHeader
    let authentication: AuthenticationMethod
    init(header: BackupHeader, authentication: AuthenticationMethod) {
        self.header = header
        self.authentication = authentication
    }
}

/// What qubes.xml said.
private final class VMListRead: Sendable {
    let vms: [VMEntry]?
    let qubesXMLChunks: Int
    init(vms: [VMEntry]?, qubesXMLChunks: Int) {
        self.vms = vms
        self.qubesXMLChunks = qubesXMLChunks
    }
}

/// What every step of a restore shares: the outer stream and how to read it.
private struct RestoreContext {
    let reader: TarReader
    let passphrase: Secret
    let options: RestoreOptions
    weak var observer: RestoreObserver?

    func readSmallMember(named name: String, limit: Int) throws(QBError) -> [UInt8] {
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
}

/// The chunks after the header, with what was read of them ahead of turn.
///
/// Key derivation, not data, bounds a v4 restore, and qubes.xml's key
/// would otherwise wait for the header's: with a second core, its first
/// chunk is read and opened while the header is verified, under the
/// backup-id the header claims. The guess is used only if the header then
/// authenticates with that backup-id. Until then nothing from the header is
/// believed: the claim is only a KDF input, and the work is bounded by the
/// same scrypt limits every chunk's unauthenticated envelope header
/// already is. Only a qubes.xml chunk is read ahead; any other first member
/// is only named, its data left for its route.
private struct ReadAhead {
    let chunks: ChunkReader
    /// A failure while reading ahead, reported in its turn.
    var failure: QBError?
    /// qubes.xml's first chunk, read ahead of its turn.
    var early: StoredChunk?
    /// v4: qubes.xml's first chunk, being opened, and the backup-id it is
    /// opened under.
    var guess: (backupID: String, opened: WorkerThread<[UInt8]>)?

    init(chunks: ChunkReader) { self.chunks = chunks }

    /// Reads the first chunk now and starts opening it, in a slot of its
    /// own, when it is qubes.xml's.
    init(context: RestoreContext, headerBytes: [UInt8], slots: JobSlots) {
        chunks = ChunkReader(reader: context.reader, layout: .envelopes, maximumChunkSize: context.options.maximumChunkSize)
        guard let backupID = BackupHeader.claimedBackupID(in: headerBytes) else { return }
        let chunks = self.chunks
        let read = Result { () throws(QBError) -> StoredChunk? in
            guard try chunks.nextName()?.file == "qubes.xml" else { return nil }
            return try chunks.take(keep: true)
        }
        guard case .success(let chunk?) = read else {
            if case .failure(let error) = read { failure = error }
            return
        }
        early = chunk
        let opener = ChunkOpener.scrypt(backupID: backupID, passphrase: context.passphrase, limits: context.options.scryptLimits)
        let memory = opener.memory(of: chunk)
        if let thread = try? WorkerThread({ () throws(QBError) -> [UInt8] in
            try slots.withSlot(bytes: memory) { () throws(QBError) -> [UInt8] in try opener.open(chunk, slots: slots) }
        }) {
            guess = (backupID, thread)
        }
    }

    /// The name of the next chunk of the outer stream, the one read ahead first.
    func nextName() throws(QBError) -> ChunkName? {
        if let failure { throw failure }
        if let early { return early.name }
        return try chunks.nextName()
    }

    /// The chunk `nextName()` named, with its bytes.
    mutating func take() throws(QBError) -> StoredChunk {
        if let chunk = early.take() { return chunk }
        return try chunks.take(keep: true)
    }

    /// Opens a chunk, with the key derived ahead when there is one.
    mutating func open(_ chunk: StoredChunk, with opener: ChunkOpener, slots: JobSlots) throws(QBError) -> [UInt8] {
        if let guess, chunk.name.file == "qubes.xml", chunk.name.index == 0 {
            self.guess = nil
            return try guess.opened.join().get()
        }
        return try slots.withSlot(bytes: opener.memory(of: chunk)) { () throws(QBError) -> [UInt8] in try opener.open(chunk, slots: slots) }
    }

    /// Waits for a guess no longer wanted (its thread may be inside OpenSSL)
    /// and forgets it.
    mutating func discardGuess() {
        _ = guess?.opened.join()
        guess = nil
    }
}
