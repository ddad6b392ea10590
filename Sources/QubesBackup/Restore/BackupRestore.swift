/// Tuning and limits of a restore.
public struct RestoreOptions: Sendable {
    /// Chunks authenticated (v4: derived and decrypted) at once.
    public var parallelism: Int
    /// Largest chunk held in memory while it is authenticated.
    public var maximumChunkSize: Int
    public var scryptLimits: ScryptLimits
    public var decompression: DecompressionOptions

    public init(parallelism: Int, maximumChunkSize: Int = 1 << 30, scryptLimits: ScryptLimits = .default,
                decompression: DecompressionOptions = DecompressionOptions()) {
        self.parallelism = parallelism
        self.maximumChunkSize = maximumChunkSize
        self.scryptLimits = scryptLimits
        self.decompression = decompression
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
    /// The chunk read after qubes.xml's last one, before routes were known.
    private var lookahead: StoredChunk?

    public init(source: ByteSource, passphrase: Secret, options: RestoreOptions, observer: RestoreObserver? = nil) {
        self.reader = TarReader(source: source, options: .init(ignoreZeros: true))
        self.passphrase = passphrase
        self.options = options
        self.observer = observer
    }

    /// Reads, authenticates and validates `backup-header` (FORMAT.md §4, §5).
    public func readHeader() throws(QBError) -> BackupHeader {
        let headerBytes = try readSmallMember(named: "backup-header", limit: BackupHeader.maximumSize)
        let macBytes = try readSmallMember(named: "backup-header.hmac", limit: DigestLine.maximumFileSize)
        let method = try HeaderAuthentication.verify(header: headerBytes, hmacFile: macBytes, passphrase: passphrase)
        let header = try BackupHeader(parsing: headerBytes)
        try HeaderAuthentication.checkConsistency(header, method: method)
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
        chunks = ChunkReader(reader: reader, layout: header.version == 4 ? .envelopes : .hmacPairs,
                             maximumChunkSize: options.maximumChunkSize)
        self.header = header
        self.authentication = method
        return header
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
        guard let chunks, let opener, let header else { throw QBError(.usage, "read the header first") }
        var next = try chunks.next()
        guard next?.name.file == "qubes.xml" else {
            lookahead = next
            observer?.warning("no qubes.xml after the header: VMs are known only by their backup directory (vm3, …)")
            return nil
        }
        let pipeline = try FilePipeline(file: "qubes.xml", header: header, passphrase: passphrase, decompression: options.decompression,
                                        target: InnerArchiveTarget(directory: nil,
                                                                   relocation: try MemberRelocation(within: "qubes.xml", stripComponents: 0),
                                                                   captureLimit: XMLDocument.maximumSize))
        do throws(QBError) {
            while let chunk = next, chunk.name.file == "qubes.xml" {
                qubesXMLChunks += 1
                try pipeline.deliver(try opener.open(chunk))
                next = try chunks.next()
            }
            lookahead = next
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
            var next = lookahead
            lookahead = nil
            if next == nil { next = try chunks.next() }
            while let chunk = next {
                let file = chunk.name.file
                if files.last?.file != file {
                    if let current { close(current) }
                    current = nil
                    files.append((file, 0))
                    if case .stream(let target) = try decide(file) {
                        current = try FilePipeline(file: file, header: header, passphrase: passphrase,
                                                   decompression: options.decompression, target: target)
                        let started = current!
                        jobs.then { observer?.fileStarted(started.file) }
                    }
                }
                files[files.count - 1].chunks += 1
                if let pipeline = current {
                    try jobs.submit({ () throws(QBError) -> [UInt8] in try opener.open(chunk) },
                                    deliver: { (bytes: [UInt8]) throws(QBError) in try pipeline.deliver(bytes) })
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
