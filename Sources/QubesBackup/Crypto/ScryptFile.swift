/// Resource limits for scrypt parameters, which are read before any
/// authentication and are therefore attacker-controlled (FORMAT.md §6.2).
public struct ScryptLimits: Sendable, Equatable {
    /// Largest memory a derivation may take, 128·r·(N + p + 2) bytes. Qubes'
    /// default parameters (logN 20, r 8, p 1) need just over 1 GiB; the
    /// default allows twice that.
    public var maximumMemory: Int
    /// Largest p (parallel work factor).
    public var maximumP: Int

    public init(maximumMemory: Int = 2 << 30, maximumP: Int = 64) {
        self.maximumMemory = maximumMemory
        self.maximumP = maximumP
    }

    public static let `default` = ScryptLimits()
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
        let tooMuchMemory = logN > 40 || r > limits.maximumMemory / 128 / Self.blocks(logN: logN, p: p)
        guard !tooMuchMemory, p <= limits.maximumP else {
            throw QBError(.limitExceeded, "scrypt parameters logN \(logN), r \(r), p \(p) exceed the work limit", subject: subject,
                          hint: "at most \(limits.maximumMemory) bytes and p \(limits.maximumP); raise the limit only for a backup you trust")
        }
        salt = Array(b[16..<48])
        signed = Array(b[0..<64])
        headerMAC = Array(b[64..<96])
    }

    /// The expensive, memory-hard step; independent per envelope, so it can
    /// run for several chunks at once.
    public func deriveKey(passphrase: Secret) throws(QBError) -> ScryptKey {
        let dk = try ScryptKDF.derive(passphrase: passphrase, salt: salt, logN: logN, r: r, p: p, length: 64)
        return ScryptKey(derived: dk)
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
    public static func decrypt(_ envelope: consuming [UInt8], passphrase: Secret, limits: ScryptLimits = .default,
                               subject: String? = nil, wrongKeyHint: String = QBError.wrongPassphraseOrTampered) throws(QBError) -> [UInt8] {
        let header = try ScryptHeader(parsing: envelope[...], limits: limits, subject: subject)
        let key = try header.deriveKey(passphrase: passphrase)
        return try key.open(consume envelope, header: header, subject: subject, wrongKeyHint: wrongKeyHint)
    }
}
