internal import COpenSSL

/// Passphrase bytes (and anything derived from them) that are wiped from
/// memory when the last reference goes away.
public final class Secret: @unchecked Sendable {
    // @unchecked: immutable after init; deinit is the only writer.
    public private(set) var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public convenience init(_ text: String) { self.init(Array(text.utf8)) }

    deinit {
        bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { OPENSSL_cleanse(base, raw.count) }
        }
    }

    public var count: Int { bytes.count }

    /// `PREFIX!` + self — how Qubes binds a scrypt passphrase to a member name
    /// and a backup-id (FORMAT.md §5.2).
    public func bound(to parts: [String]) -> Secret {
        var out: [UInt8] = []
        for part in parts { out += Array(part.utf8); out.append(UInt8(ascii: "!")) }
        out += bytes
        return Secret(out)
    }
}
