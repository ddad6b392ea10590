/// The text of a v2/v3 `.hmac` file: one line `[LABEL](NAME)= HEX`, as every
/// OpenSSL version wrote it for `openssl dgst -ALG -hmac PASS` (FORMAT.md §5.1):
/// `(stdin)= …` (1.0/1.1), `SHA2-512(stdin)= …` (3.x, stdin),
/// `HMAC-SHA512(file)= …` / `HMAC-SHA2-512(file)= …` (a named file).
public struct DigestLine: Sendable, Equatable {
    /// Qubes' HMAC_MAX_SIZE: a longer `.hmac` file is refused unread.
    public static let maximumFileSize = 4096

    /// The digest label before the parenthesis, without any `HMAC-` prefix;
    /// empty for the OpenSSL 1.x stdin form.
    public let label: String
    /// What was hashed, as OpenSSL named it (`stdin` or a file name).
    public let name: String
    public let mac: [UInt8]

    public init(label: String, name: String, mac: [UInt8]) {
        self.label = label
        self.name = name
        self.mac = mac
    }

    /// Qubes' HMAC_MAX_SIZE rule, for HMAC text and v4 scrypt copies alike.
    public static func checkFileSize(_ bytes: [UInt8], subject: String?) throws(QBError) {
        if bytes.count > maximumFileSize {
            throw QBError(.limitExceeded, "hmac file is larger than \(maximumFileSize) bytes", subject: subject,
                          hint: "refused unread, as Qubes does; the backup was tampered with")
        }
    }

    /// Parses the bytes of a `.hmac` file strictly: ASCII, one line with an
    /// optional final newline, lower-case hex of a whole number of bytes.
    public init(parsing bytes: [UInt8], subject: String? = nil) throws(QBError) {
        func bad(_ why: String) -> QBError {
            QBError(.malformed, "invalid hmac file: \(why)", subject: subject, hint: "not written by openssl dgst")
        }
        try Self.checkFileSize(bytes, subject: subject)
        var line = bytes
        if line.last == UInt8(ascii: "\n") { line.removeLast() }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard line.allSatisfy({ (0x20...0x7e).contains($0) }) else { throw bad("not one line of printable ASCII") }
        // The name may itself contain ")= ", so split at the last occurrence.
        guard let open = line.firstIndex(of: UInt8(ascii: "(")),
              let close = lastIndex(of: Array(")= ".utf8), in: line), open < close else {
            throw bad("expected LABEL(NAME)= HEX")
        }
        var label = String(decoding: line[..<open], as: UTF8.self)
        if label.hasPrefix("HMAC-") { label.removeFirst(5) }
        guard label.utf8.allSatisfy(isLabelCharacter) else { throw bad("bad digest label") }
        let hex = Array(line[(close + 3)...])
        guard !hex.isEmpty, hex.count % 2 == 0 else { throw bad("the digest is not whole bytes of hex") }
        var mac: [UInt8] = []
        mac.reserveCapacity(hex.count / 2)
        var i = 0
        while i < hex.count {
            guard let high = hexValue(hex[i]), let low = hexValue(hex[i + 1]) else {
                throw bad("the digest is not lower-case hex")
            }
            mac.append(high << 4 | low)
            i += 2
        }
        self.label = label
        self.name = String(decoding: line[(open + 1)..<close], as: UTF8.self)
        self.mac = mac
    }

    /// The line `openssl dgst -ALG -hmac PASS` prints on OpenSSL 3: the bare
    /// label for standard input, `HMAC-` + label for a named file.
    public static func format(mac: [UInt8], algorithm: DigestAlgorithm, fileName: String?) -> String {
        let hex = hexString(mac)
        if let fileName { return "HMAC-\(algorithm.label)(\(fileName))= \(hex)" }
        return "\(algorithm.label)(stdin)= \(hex)"
    }
}

private func lastIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    var i = haystack.count - needle.count
    while i >= 0 {
        if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        i -= 1
    }
    return nil
}

private func isLabelCharacter(_ c: UInt8) -> Bool {
    switch c {
    case 0x30...0x39, 0x41...0x5a, 0x61...0x7a, 0x2d, 0x2f: return true
    default: return false
    }
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}

/// Lower-case hex, two digits per byte.
public func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}
