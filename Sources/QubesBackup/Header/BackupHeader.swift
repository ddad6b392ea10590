/// A parsed and validated `backup-header` (FORMAT.md §4): Qubes' own rules,
/// which exist because of Qubes Security Bulletin 51, plus qb's stricter ones
/// (§4.4). The header is untrusted until authenticated; parsing is written to
/// survive hostile input either way.
public struct BackupHeader: Sendable, Equatable {
    /// qb's cap on the header's size (Qubes' v4 `.hmac` limit bounds it near 4 KiB).
    public static let maximumSize = 65536

    /// The keys Qubes knows, in the order R4 writes them.
    public static let knownKeys = ["version", "encrypted", "compressed", "compression-filter",
                                   "crypto-algorithm", "hmac-algorithm", "backup-id"]

    /// 2, 3 or 4. A header without a `version` line is a v2 header.
    public var version: Int
    public var encrypted: Bool
    public var compressed: Bool
    /// The filter that decompresses the inner streams; nil when not compressed.
    /// Always one of the allow-listed names.
    public var compressionFilter: CompressionFilter?
    public var cryptoAlgorithm: String?
    public var hmacAlgorithm: String?
    public var backupID: String?
    /// The known keys with their values, in the order the header gave them.
    public var fields: [(key: String, value: String)]
    /// Keys Qubes ignores; their values are not validated and never used.
    public var ignoredKeys: [String]
    /// Things that are allowed but unusual (a backup-id not in Qubes' form).
    public var warnings: [String]

    public static func == (a: BackupHeader, b: BackupHeader) -> Bool {
        a.version == b.version && a.encrypted == b.encrypted && a.compressed == b.compressed
            && a.compressionFilter == b.compressionFilter && a.cryptoAlgorithm == b.cryptoAlgorithm
            && a.hmacAlgorithm == b.hmacAlgorithm && a.backupID == b.backupID
            && a.fields.map { $0.key + "=" + $0.value } == b.fields.map { $0.key + "=" + $0.value }
    }

    /// The value of a known key as the header gave it.
    public func value(of key: String) -> String? {
        fields.first { $0.key == key }?.value
    }

    /// Parses and validates. Every refusal is `.malformed` except filter and
    /// algorithm names outside what qb can use, which are `.unsupported`.
    public init(parsing bytes: [UInt8]) throws(QBError) {
        let subject = "backup-header"
        func bad(_ message: String) -> QBError { QBError(.malformed, message, subject: subject) }
        if bytes.count > Self.maximumSize {
            throw QBError(.limitExceeded, "header is larger than \(Self.maximumSize) bytes", subject: subject)
        }
        if bytes.contains(where: { $0 >= 0x80 }) { throw bad("non-ASCII characters in backup header") }

        var values: [String: String] = [:]
        var fields: [(key: String, value: String)] = []
        var ignored: [String] = []
        for line in Self.splitLines(bytes) {
            guard line.count(where: { $0 == UInt8(ascii: "=") }) == 1 else {
                throw bad("invalid backup header line '\(printable(line))'")
            }
            let trimmed = line.drop(while: isPythonSpace).reversed().drop(while: isPythonSpace).reversed()
            let parts = Array(trimmed).split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(decoding: parts[0], as: UTF8.self)
            let value = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : ""
            guard key.utf8.allSatisfy(isHeaderCharacter) else { throw bad("invalid backup header key '\(key)'") }
            guard Self.knownKeys.contains(key) else { ignored.append(key); continue }
            guard values[key] == nil else { throw bad("duplicated header line '\(key)'") }
            guard value.utf8.allSatisfy(isHeaderCharacter) else {
                if key == "compression-filter" { _ = try Self.filter(value) }
                throw bad("invalid backup header value for '\(key)'")
            }
            values[key] = value
            fields.append((key, value))
        }

        var warnings: [String] = []
        // version: digits only (Python's int() would also take a sign).
        let version: Int
        if let text = values["version"] {
            let isDecimal = !text.isEmpty && text.count <= 18 && text.utf8.allSatisfy { (0x30...0x39).contains($0) }
            guard isDecimal, let v = Int(text) else {
                throw bad("invalid version '\(text)'")
            }
            guard (1...4).contains(v) else {
                throw QBError(.unsupported, "unsupported backup version \(v)", subject: subject)
            }
            guard v != 1 else {
                throw QBError(.unsupported, "backup format version 1 has no backup-header to restore from", subject: subject,
                              hint: "a version 1 backup is a directory; copy its files instead")
            }
            version = v
        } else {
            // R2 wrote headers without a version line (FORMAT.md §2).
            version = 2
        }

        func flag(_ key: String) throws(QBError) -> Bool? {
            guard let text = values[key] else { return nil }
            switch text.lowercased() {
            case "true", "1", "yes": return true
            case "false", "0", "no": return false
            default: throw bad("invalid boolean '\(text)' for '\(key)'")
            }
        }
        let encrypted = try flag("encrypted")
        let compressed = try flag("compressed")

        // Every known key present is validated, relevant to the version or not.
        let filter = try values["compression-filter"].map { (name) throws(QBError) in try Self.filter(name) }
        if let cipher = values["crypto-algorithm"], !CipherName.isUsable(cipher) {
            throw QBError(.unsupported, "crypto-algorithm '\(cipher)' is not a cipher qb can use", subject: subject)
        }
        if let mac = values["hmac-algorithm"], mac.lowercased() != "scrypt", DigestAlgorithm(mac) == nil {
            throw QBError(.unsupported, "hmac-algorithm '\(mac)' is not a digest qb can use", subject: subject)
        }
        if let id = values["backup-id"] {
            guard !id.isEmpty, !id.hasPrefix("-") else { throw bad("invalid backup-id '\(id)'") }
            if !Self.looksLikeQubesBackupID(id) {
                warnings.append("backup-id '\(id)' is not in Qubes' YYYYMMDDTHHMMSS-PID form")
            }
        }

        var required = ["encrypted", "compressed", "hmac-algorithm"]
        if version >= 3 { required.insert("version", at: 0) }
        if version <= 3, encrypted == true { required.append("crypto-algorithm") }
        if version >= 3, compressed == true { required.append("compression-filter") }
        if version == 4 { required.append("backup-id") }
        for key in required where values[key] == nil {
            throw bad("backup header lacks '\(key)'")
        }

        let hmac = values["hmac-algorithm"]!
        if version == 4, hmac.lowercased() != "scrypt" {
            throw QBError(.unsupported, "version 4 backups authenticate with scrypt, not '\(hmac)'", subject: subject)
        }
        if version < 4, hmac.lowercased() == "scrypt" {
            throw QBError(.unsupported, "hmac-algorithm scrypt belongs to version 4 backups", subject: subject)
        }

        self.version = version
        self.encrypted = version == 4 ? true : encrypted!
        self.compressed = compressed!
        if compressed! {
            // v2 has no filter key: its chunks are gzip (FORMAT.md §4.3).
            self.compressionFilter = filter ?? .gzip
        } else {
            self.compressionFilter = nil
        }
        self.cryptoAlgorithm = values["crypto-algorithm"]
        self.hmacAlgorithm = hmac
        self.backupID = values["backup-id"]
        self.fields = fields
        self.ignoredKeys = ignored
        self.warnings = warnings
    }

    /// The allow-list lives in `CompressionFilter`; here it only gains the subject.
    static func filter(_ name: String) throws(QBError) -> CompressionFilter {
        do { return try CompressionFilter(headerName: name) } catch { throw error.about("backup-header") }
    }

    /// The backup-id an unauthenticated header claims, found without parsing
    /// it: for starting key derivations early (`BackupRestore`), never for
    /// believing. A header that parses to another backup-id, or not at all,
    /// makes the guess worthless, not wrong.
    public static func claimedBackupID(in bytes: [UInt8]) -> String? {
        guard bytes.count <= maximumSize else { return nil }
        let key = Array("backup-id=".utf8)
        for line in splitLines(bytes) where line.starts(with: key) {
            let value = line.dropFirst(key.count)
            guard !value.isEmpty, value.allSatisfy(isHeaderCharacter) else { return nil }
            return String(decoding: value, as: UTF8.self)
        }
        return nil
    }

    static func looksLikeQubesBackupID(_ id: String) -> Bool {
        let b = Array(id.utf8)
        guard b.count >= 17, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "-") else { return false }
        let isDigit: (UInt8) -> Bool = { $0 >= 0x30 && $0 <= 0x39 }
        return b[0..<8].allSatisfy(isDigit) && b[9..<15].allSatisfy(isDigit) && b[16...].allSatisfy(isDigit)
    }

    /// Python's `str.splitlines()` on ASCII: LF, CR, CRLF, VT, FF, FS, GS, RS
    /// end a line; a final separator does not make an empty line.
    static func splitLines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0, i = 0
        while i < bytes.count {
            let c = bytes[i]
            if lineSeparators.contains(c) {
                lines.append(bytes[start..<i])
                if c == 0x0d, i + 1 < bytes.count, bytes[i + 1] == 0x0a { i += 1 }
                start = i + 1
            }
            i += 1
        }
        if start < bytes.count { lines.append(bytes[start...]) }
        return lines
    }
}

/// Python's `splitlines()` separators within ASCII.
private let lineSeparators: Set<UInt8> = [0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e]

/// Python's whitespace in ASCII: what `str.strip()` removes.
private func isPythonSpace(_ c: UInt8) -> Bool {
    switch c {
    case 0x09...0x0d, 0x1c...0x20: return true
    default: return false
    }
}

/// Qubes' key and value alphabet `[A-Za-z0-9-]`: nothing a shell or a
/// command line could interpret can pass.
private func isHeaderCharacter(_ c: UInt8) -> Bool {
    switch c {
    case 0x30...0x39, 0x41...0x5a, 0x61...0x7a, 0x2d: return true
    default: return false
    }
}

/// Shows untrusted bytes in a message without control characters.
func printable<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    var out = ""
    for c in bytes.prefix(80) {
        if c >= 0x20 && c < 0x7f { out.unicodeScalars.append(Unicode.Scalar(c)) } else { out += "\\x" + hexString([c]) }
    }
    return bytes.count > 80 ? out + "…" : out
}

extension BackupHeader {
    /// The header's meaning in canonical form, for `--shell` and `--json`:
    /// `version` as a number, booleans as `true`/`false`, the filter as used.
    public var normalizedFields: [(key: String, value: String)] {
        var out: [(key: String, value: String)] = [("version", String(version)), ("encrypted", String(encrypted)),
                                                   ("compressed", String(compressed))]
        if let compressionFilter { out.append(("compression-filter", compressionFilter.rawValue)) }
        if let cryptoAlgorithm { out.append(("crypto-algorithm", cryptoAlgorithm)) }
        if let hmacAlgorithm { out.append(("hmac-algorithm", hmacAlgorithm)) }
        if let backupID { out.append(("backup-id", backupID)) }
        return out
    }
}
