/// One chunk of a backed-up file as the outer stream holds it, not yet
/// authenticated.
public struct StoredChunk: Sendable {
    /// The data member: `X.NNN` (v2/v3) or `X.NNN.enc` (v4).
    public let name: ChunkName
    /// The member's bytes; nil when the caller chose to skip them.
    public let bytes: [UInt8]?
    /// v2/v3: the text of `X.NNN.hmac`.
    public let mac: [UInt8]?
}

/// Reads the chunks of the outer backup stream in order (FORMAT.md §3.4):
/// member names and order checked by `ChunkSequence`, a v2/v3 chunk joined
/// with its `.hmac`, sizes capped before anything is held in memory.
public final class ChunkReader {
    private let reader: TarReader
    private var sequence: ChunkSequence
    public let maximumChunkSize: Int
    /// Chunk memory given back by `recycle`. A fresh 100 MiB buffer costs the
    /// kernel 25,600 zeroed pages, about what authenticating its bytes
    /// costs, so the next chunk is read into one already touched.
    private var spares: [[UInt8]] = []
    private static let maximumSpares = 2

    public init(reader: TarReader, layout: ChunkSequence.Layout, maximumChunkSize: Int, firstIndex: Int = 0) {
        self.reader = reader
        self.sequence = ChunkSequence(layout: layout, firstIndex: firstIndex)
        self.maximumChunkSize = maximumChunkSize
    }

    /// Where the chunk member `nextName()` named starts in the input.
    public var memberOffset: Int64 { reader.memberOffset }

    /// The chunk member whose header `nextName()` read and whose data is
    /// still unread.
    private var pending: (entry: TarEntry, name: ChunkName)?

    /// The next chunk, or nil at a proper end of the stream. `keep` sees the
    /// name first: when it returns false the data is passed over (skipped
    /// where the input can seek), not held.
    public func next(keep: (ChunkName) throws(QBError) -> Bool = { _ in true }) throws(QBError) -> StoredChunk? {
        guard let name = try nextName() else { return nil }
        return try take(keep: try keep(name))
    }

    /// Reads the header of the next chunk member, checks its name against
    /// the sequence and its size against the limit, and leaves its data
    /// unread; nil at a proper end of the stream. Called again before
    /// `take(keep:)`, returns the same name: a caller can learn where
    /// qubes.xml ends without reading a byte of the VM chunk that follows.
    public func nextName() throws(QBError) -> ChunkName? {
        if let pending { return pending.name }
        guard let entry = try reader.next() else {
            try sequence.finish()
            return nil
        }
        let name = try sequence.accept(entry.name)
        try Self.checkRegular(entry)
        guard entry.size <= Int64(maximumChunkSize) else {
            throw QBError(.limitExceeded, "chunk is larger than \(maximumChunkSize) bytes", subject: entry.name,
                          hint: "Qubes writes 100 MiB chunks; raise the chunk size limit only for a backup you trust")
        }
        pending = (entry, name)
        return name
    }

    /// The chunk `nextName()` named: with its bytes when `keep`, without
    /// them otherwise (the tar reader passes over them when it moves on);
    /// v2/v3: with the text of its `.hmac`, which is always read.
    public func take(keep: Bool) throws(QBError) -> StoredChunk {
        guard let (entry, name) = pending else { throw QBError(.internalError, "chunk taken before its name was read") }
        pending = nil
        var bytes: [UInt8]?
        if keep {
            bytes = try readContents(of: entry, into: spares.popLast() ?? [])
        }
        guard sequence.layout == .hmacPairs else {
            return StoredChunk(name: name, bytes: bytes, mac: nil)
        }
        guard let macEntry = try reader.next() else {
            try sequence.finish()
            throw QBError(.truncated, "\(name) has no .hmac", subject: name.description)
        }
        _ = try sequence.accept(macEntry.name)
        try Self.checkRegular(macEntry)
        let mac: [UInt8]
        do throws(QBError) {
            mac = try readAll(from: MemberContents(reader), limit: DigestLine.maximumFileSize, what: ".hmac file")
        } catch {
            throw error.about(macEntry.name)
        }
        return StoredChunk(name: name, bytes: bytes, mac: mac)
    }

    /// The member's logical content (holes as zeros) in `storage`'s memory,
    /// copied once, from the tar reader's buffer.
    private func readContents(of entry: TarEntry, into storage: consuming [UInt8]) throws(QBError) -> [UInt8] {
        let size = Int(entry.size)
        var bytes = storage
        bytes.removeAll(keepingCapacity: true)
        bytes.reserveCapacity(size)
        while try reader.readFragment({ (offset, fragment) throws(QBError) in
            // The tar reader keeps fragments inside the member's size.
            guard offset >= bytes.count, Int(offset) <= size - fragment.byteCount else {
                throw QBError(.internalError, "member data out of order", subject: entry.name)
            }
            bytes.append(contentsOf: repeatElement(0, count: Int(offset) - bytes.count))
            bytes.append(contentsOf: fragment)
        }) {}
        bytes.append(contentsOf: repeatElement(0, count: size - bytes.count))
        return bytes
    }

    /// Gives back a chunk's memory once its bytes were released downstream;
    /// pass the last reference, or the memory cannot be reused.
    public func recycle(_ bytes: consuming [UInt8]) {
        guard spares.count < Self.maximumSpares, bytes.capacity >= 1 << 20 else { return }
        spares.append(bytes)
    }

    /// The outer stream holds regular files only (FORMAT.md §3.1).
    static func checkRegular(_ entry: TarEntry) throws(QBError) {
        guard entry.kind == .regular else {
            throw QBError(.malformed, "the backup stream holds something other than a regular file", subject: entry.name,
                          hint: "not a Qubes backup, or tampered")
        }
    }
}

/// The current member of a tar reader as a byte source.
public final class MemberContents: ByteSource {
    private let reader: TarReader
    public init(_ reader: TarReader) { self.reader = reader }
    public func read(into buffer: IOBuffer) throws(QBError) -> Int { try reader.read(into: buffer) }
}

/// How a chunk is authenticated and opened: what comes out is released
/// downstream, so it must be called on the whole chunk before any byte of
/// it is used (FORMAT.md §5.3).
public enum ChunkOpener: Sendable {
    /// v2/v3: the chunk's HMAC against its `.hmac` text; the chunk comes out
    /// unchanged. A nil digest tries the digests Qubes used.
    case hmac(digest: DigestAlgorithm?, passphrase: Secret)
    /// v4: a scrypt envelope whose passphrase binds the backup-id and the
    /// chunk's name; the plaintext comes out. With `keys`, a key that
    /// opened a chunk is kept, and the same chunk read again in a later
    /// pass is opened without deriving it again.
    case scrypt(backupID: String, passphrase: Secret, limits: ScryptLimits, keys: ScryptKeyCache? = nil)

    /// With `slots`, the caller holds one of them for this job, and a key
    /// derivation refused its memory may wait for fewer jobs to run.
    public func open(_ chunk: consuming StoredChunk, slots: JobSlots? = nil) throws(QBError) -> [UInt8] {
        let name = chunk.name
        let mac = chunk.mac
        let bytes = (consume chunk).bytes ?? []
        switch self {
        case .hmac(let digest, let passphrase):
            let line = try DigestLine(parsing: mac ?? [], subject: name.description + ".hmac")
            _ = try HMACVerifier.verify(bytes: bytes.span.bytes, expected: line, passphrase: passphrase,
                                        requested: digest, subject: name.description)
            return bytes
        case .scrypt(let backupID, let passphrase, let limits, let keys):
            let subject = name.description
            let header = try ScryptHeader(parsing: bytes[...], limits: limits, subject: subject)
            let kept = keys?.key(for: name.chunk, header: header)
            let key: ScryptKey
            if let kept { key = kept } else {
                key = try header.deriveKey(passphrase: passphrase.bound(to: [backupID, name.chunk]), slots: slots, subject: subject)
            }
            let opened = try key.open(consume bytes, header: header, subject: subject,
                                      wrongKeyHint: "wrong passphrase, or the chunk was renamed or comes from another backup")
            if kept == nil { keys?.keep(key, for: name.chunk, header: header) } else { keys?.countReuse() }
            return opened
        }
    }
}

extension ChunkOpener {
    /// The scrypt memory a chunk's derivation will take, from its envelope
    /// header; nil for an HMAC, or when the header does not parse (opening
    /// the chunk then says why).
    public func scryptMemory(of chunk: StoredChunk) -> Int? {
        guard case .scrypt(_, _, let limits, let keys) = self, let bytes = chunk.bytes,
              let header = try? ScryptHeader(parsing: bytes[...], limits: limits, subject: nil) else { return nil }
        return keys?.key(for: chunk.name.chunk, header: header) == nil ? header.memory : 0
    }

    /// What opening a chunk holds at once: its bytes and its derivation.
    public func memory(of chunk: StoredChunk) -> Int {
        (chunk.bytes?.count ?? 0) + (scryptMemory(of: chunk) ?? 0)
    }
}

/// Gives a chunk to the job that opens it together with the only reference
/// to its bytes, so that a v4 chunk is decrypted in its own memory.
final class ChunkHandoff: @unchecked Sendable {
    // @unchecked: set before the job is queued, taken once by the job.
    private var chunk: StoredChunk?
    init(_ chunk: consuming StoredChunk) { self.chunk = chunk }
    func take() -> StoredChunk { chunk.take()! }
}
