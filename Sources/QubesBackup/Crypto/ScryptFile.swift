import Synchronization

/// Resource limits for scrypt parameters, which are read before any
/// authentication and are therefore attacker-controlled (FORMAT.md §6.2).
///
/// Qubes runs `scrypt enc` with its defaults, which choose N, and p when
/// memory binds, from the writing machine's speed and memory: logN 20 or 21
/// (1 or 2 GiB), p > 1 on a fast machine with little memory. So the memory
/// limit is by default what this machine can give (`affordable`), and the
/// work N·r·p has a fixed sanity limit that no writer's defaults reach.
public struct ScryptLimits: Sendable, Equatable {
    /// Largest memory a derivation may take, 128·r·(N + p + 2) bytes.
    public var maximumMemory: Int
    /// Largest N·r·p, the work of one derivation.
    public var maximumWork: Int
    /// Set when `maximumMemory` is what the machine had available rather
    /// than a limit the user gave: the refusal then says so.
    public var available: SystemResources?

    /// 2^28: 32 times Qubes' usual logN 20, r 8, p 1 (2^23), about two
    /// minutes of one core where that takes four seconds — `scrypt dec`'s
    /// own default bound is 300 s. `scrypt enc` picks at most 5 s of work
    /// on the writing machine, so only a writer 30 times faster than a
    /// 2020s laptop core could need more; a header asking more is corrupt
    /// or hostile.
    public static let defaultMaximumWork = 1 << 28

    public init(maximumMemory: Int, maximumWork: Int = ScryptLimits.defaultMaximumWork) {
        self.maximumMemory = maximumMemory
        self.maximumWork = maximumWork
        self.available = nil
    }

    /// Every parameter set this machine can afford now: memory up to what
    /// `resources` says is available, work up to the sanity limit.
    public static func affordable(_ resources: SystemResources = .current()) -> ScryptLimits {
        var limits = ScryptLimits(maximumMemory: resources.availableMemory)
        limits.available = resources
        return limits
    }
}

/// The header of a scrypt envelope (Tarsnap's scrypt file format, FORMAT.md §6.2).
public struct ScryptHeader: Sendable {
    public static let size = 96
    /// Header plus trailing MAC: an envelope of empty plaintext.
    public static let overhead = 128

    public let logN: Int
    public let r: Int
    public let p: Int
    let salt: [UInt8]
    /// Bytes 0..<64: what the header MAC covers.
    let signed: [UInt8]
    let headerMAC: [UInt8]

    /// Memory the derivation needs, in bytes: N blocks of 128·r for the
    /// memory-hard step, p for the PBKDF2 output it mixes, 2 of scratch.
    public var memory: Int { 128 * r * Self.blocks(logN: logN, p: p) }

    private static func blocks(logN: Int, p: Int) -> Int { (1 << logN) + p + 2 }

    /// The memory an envelope's derivation will take, when its header
    /// parses within `limits`; nil otherwise (opening it then says why).
    public static func memory(of envelope: [UInt8], limits: ScryptLimits) -> Int? {
        (try? ScryptHeader(parsing: envelope[...], limits: limits, subject: nil))?.memory
    }

    /// Checks magic, version and checksum, then the parameters against `limits`
    /// — before any key derivation can allocate anything.
    public init(parsing bytes: ArraySlice<UInt8>, limits: ScryptLimits, subject: String?) throws(QBError) {
        guard bytes.count >= ScryptHeader.size else {
            throw QBError(.truncated, "scrypt envelope is shorter than its header", subject: subject)
        }
        let b = Array(bytes.prefix(ScryptHeader.size))
        guard b.starts(with: Array("scrypt".utf8)) else { throw QBError(.malformed, "not a scrypt envelope", subject: subject) }
        guard b[6] == 0 else { throw QBError(.unsupported, "scrypt format version \(b[6]) is not supported", subject: subject) }
        guard OpenSSLPrimitives.sha256(b[0..<48]).prefix(16).elementsEqual(b[48..<64]) else {
            throw QBError(.malformed, "scrypt header checksum does not match", subject: subject, hint: "corrupted backup")
        }
        func be32(_ at: Int) -> Int { b[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        logN = Int(b[7]); r = be32(8); p = be32(12)
        // r and p are each up to 2^32 − 1: bound them before multiplying, or
        // r · p overflows Int and traps (found by FuzzScryptFile).
        guard logN >= 1, logN <= 63, r >= 1, p >= 1, r < 1 << 30, p < 1 << 30, r * p < 1 << 30 else {
            throw QBError(.malformed, "invalid scrypt parameters logN \(logN), r \(r), p \(p)", subject: subject)
        }
        // N·r·p first: it is what bounds the time, and the memory check
        // below would not stop a small N with a huge p.
        let (work, overflow) = (1 << min(logN, 62)).multipliedReportingOverflow(by: r * p)
        guard logN < 62, !overflow, work <= limits.maximumWork else {
            throw QBError(.limitExceeded, "scrypt parameters logN \(logN), r \(r), p \(p) ask for absurd work: N·r·p over the sanity limit of \(limits.maximumWork)",
                          subject: subject, hint: "no Qubes backup needs this much; corrupted or hostile backup")
        }
        let (perBlock, overflowR) = r.multipliedReportingOverflow(by: Self.blocks(logN: logN, p: p))
        let (bytes, overflowM) = perBlock.multipliedReportingOverflow(by: 128)
        let memory = overflowR || overflowM ? Int.max : bytes
        guard memory <= limits.maximumMemory else {
            let needed = "need \(ByteSize.describe(memory)) (\(memory) bytes) of memory"
            if let available = limits.available {
                throw QBError(.limitExceeded, "scrypt parameters logN \(logN), r \(r), p \(p) \(needed); \(available.memoryDescription)",
                              subject: subject, hint: "free memory, or try anyway with --max-memory \(memory), e.g. with swap")
            }
            throw QBError(.limitExceeded, "scrypt parameters logN \(logN), r \(r), p \(p) \(needed), over the limit of \(limits.maximumMemory) bytes",
                          subject: subject, hint: "raise --max-memory to at least \(memory), only for a backup you trust")
        }
        salt = Array(b[16..<48])
        signed = Array(b[0..<64])
        headerMAC = Array(b[64..<96])
    }

    /// The expensive, memory-hard step; independent per envelope, so it can
    /// run for several chunks at once. With `slots`, a job holding one of
    /// them, an allocation refused while other jobs run is waited out with
    /// one job fewer (`JobSlots.giveWayAfterShortage`); refused alone, it is
    /// an `.outOfMemory` error that says what was needed and what is left.
    public func deriveKey(passphrase: Secret, slots: JobSlots? = nil, subject: String? = nil) throws(QBError) -> ScryptKey {
        do throws(QBError) {
            return try JobSlots.retryingShortage(slots) { () throws(QBError) -> ScryptKey in
                ScryptKey(derived: try ScryptKDF.derive(passphrase: passphrase, salt: salt, logN: logN, r: r, p: p, length: 64))
            }
        } catch {
            guard error.kind == .outOfMemory else { throw error }
            throw QBError(.outOfMemory,
                          "scrypt key derivation (logN \(logN), r \(r), p \(p)) needs \(ByteSize.describe(memory)) of memory and could not get it; \(SystemResources.current().memoryDescription)",
                          subject: subject, hint: "not a passphrase problem: free memory, or restore on a machine with more")
        }
    }
}

/// A derived scrypt key: the first half encrypts, the second authenticates.
public struct ScryptKey: Sendable {
    let derived: Secret

    /// Authenticates the whole envelope — header MAC, then the trailing MAC
    /// over everything before it — and only then decrypts. Nothing is
    /// released from an envelope that does not verify (unlike `scrypt dec`).
    /// Decrypts in the envelope's own memory when the caller hands over the
    /// only reference to it.
    public func open(_ envelope: consuming [UInt8], header: ScryptHeader, subject: String?, wrongKeyHint: String) throws(QBError) -> [UInt8] {
        let macKey = Secret(Array(derived.bytes[32..<64]))
        let sha256 = DigestAlgorithm("sha256")!
        guard constantTimeEqual(try HMACContext.mac(header.signed, algorithm: sha256, key: macKey), header.headerMAC) else {
            throw QBError(.authentication, "the passphrase does not open the scrypt envelope", subject: subject, hint: wrongKeyHint)
        }
        guard envelope.count >= ScryptHeader.overhead else {
            throw QBError(.truncated, "scrypt envelope is truncated", subject: subject)
        }
        let end = envelope.count - 32
        let trailer = try HMACContext(algorithm: sha256, key: macKey)
        try trailer.write(envelope[..<end])
        guard constantTimeEqual(try trailer.mac(), Array(envelope[end...])) else {
            throw QBError(.authentication, "scrypt envelope does not authenticate", subject: subject,
                          hint: "modified or truncated data; tampered backup")
        }
        var bytes = envelope
        try OpenSSLPrimitives.aes256CTR(key: derived.bytes[0..<32], inPlace: &bytes, range: ScryptHeader.size..<end)
        bytes.removeSubrange(end...)
        bytes.removeSubrange(..<ScryptHeader.size)
        return bytes
    }
}

/// Whole-envelope decryption for small members (the v4 header copy).
public enum ScryptFile {
    public static func decrypt(_ envelope: consuming [UInt8], passphrase: Secret, limits: ScryptLimits = .affordable(),
                               subject: String? = nil, wrongKeyHint: String = QBError.wrongPassphraseOrTampered,
                               slots: JobSlots? = nil) throws(QBError) -> [UInt8] {
        let header = try ScryptHeader(parsing: envelope[...], limits: limits, subject: subject)
        let key = try header.deriveKey(passphrase: passphrase, slots: slots, subject: subject)
        return try key.open(consume envelope, header: header, subject: subject, wrongKeyHint: wrongKeyHint)
    }
}

/// The keys that opened a file's chunks, kept for a later pass over the
/// same chunks (a VM's files read straight from the backup, whose
/// filesystem may need blocks that passed before anything named them), so
/// that scrypt runs once per chunk in all: about 2 s and 1 GiB each with
/// Qubes' parameters. A key is found by the chunk's name and its envelope's
/// signed header — magic, parameters, salt and checksum — so a chunk
/// rewritten since (a new salt) is derived again, and a key is kept only
/// once it has opened its chunk: nothing unauthenticated is remembered.
/// 64 bytes a chunk: 640 KiB for a terabyte of 100 MiB chunks.
public final class ScryptKeyCache: Sendable {
    private struct Entry {
        let signed: [UInt8]
        let key: ScryptKey
    }

    private let state = Mutex(State())
    private struct State {
        var keys: [String: Entry] = [:]
        var derived = 0
        var reused = 0
    }

    public init() {}

    func key(for chunk: String, header: ScryptHeader) -> ScryptKey? {
        state.withLock { s in
            guard let entry = s.keys[chunk], entry.signed == header.signed else { return nil }
            return entry.key
        }
    }

    /// Called once per opening with a key just derived: kept, and counted.
    func keep(_ key: ScryptKey, for chunk: String, header: ScryptHeader) {
        state.withLock { s in
            s.keys[chunk] = Entry(signed: header.signed, key: key)
            s.derived += 1
        }
    }

    /// Called once per opening with a kept key.
    func countReuse() { state.withLock { $0.reused += 1 } }

    /// Key derivations run, and chunks opened with a kept key, so far.
    public var counts: (derived: Int, reused: Int) { state.withLock { ($0.derived, $0.reused) } }
}
