internal import COpenSSL

/// A message digest OpenSSL knows, by any of its names (`sha512`, `SHA2-512`).
public struct DigestAlgorithm: Sendable, Equatable {
    /// The name it was asked for, lower case.
    public let name: String
    /// OpenSSL 3's canonical name (`SHA2-512`): the label `openssl dgst` prints.
    public let label: String
    public let size: Int

    /// Looks the digest up in OpenSSL; nil when OpenSSL does not know it.
    public init?(_ name: String) {
        let lower = name.lowercased()
        guard !lower.isEmpty, lower.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }),
              let md = EVP_MD_fetch(nil, lower, nil) else {
            ERR_clear_error()
            return nil
        }
        defer { EVP_MD_free(md) }
        self.name = lower
        self.label = String(cString: EVP_MD_get0_name(md))
        self.size = Int(EVP_MD_get_size(md))
        if size <= 0 { return nil }
    }

    /// The digests a v2/v3 header's HMAC may use, cheapest search order first
    /// (FORMAT.md §5.1: sha512 is what R3 wrote; the others are older defaults).
    public static let headerSearchOrder = ["sha512", "sha256", "sha1", "md5", "sha384", "sha224"]
}

/// A running HMAC (RFC 2104) over OpenSSL's EVP_MAC; usable as a sink.
public final class HMACContext: ByteSink {
    private let context: OpaquePointer
    public let algorithm: DigestAlgorithm
    private var result: [UInt8]?

    public init(algorithm: DigestAlgorithm, key: Secret) throws(QBError) {
        let made = key.bytes.withUnsafeBytes { raw in qb_hmac_new(algorithm.name, raw.baseAddress, raw.count) }
        guard let made else {
            throw QBError.openSSL(.unsupported, "digest \(algorithm.name) cannot be used for an HMAC")
        }
        context = made
        self.algorithm = algorithm
    }

    deinit { EVP_MAC_CTX_free(context) }

    public func write(_ bytes: RawSpan) throws(QBError) {
        let ok = bytes.withUnsafeBytes { update($0) }
        if !ok { throw QBError.openSSL("HMAC update failed") }
    }

    /// Adds bytes held in an array, without copying them.
    public func write(_ bytes: ArraySlice<UInt8>) throws(QBError) {
        let ok = bytes.withUnsafeBytes { update($0) }
        if !ok { throw QBError.openSSL("HMAC update failed") }
    }

    private func update(_ raw: UnsafeRawBufferPointer) -> Bool {
        raw.count == 0 || EVP_MAC_update(context, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), raw.count) == 1
    }

    public func finish() throws(QBError) {
        if result != nil { return }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length = 0
        let ok = out.withUnsafeMutableBufferPointer { EVP_MAC_final(context, $0.baseAddress, &length, $0.count) }
        if ok != 1 { throw QBError.openSSL("HMAC final failed") }
        result = Array(out.prefix(length))
    }

    /// The MAC; finishes the computation on first use.
    public func mac() throws(QBError) -> [UInt8] {
        try finish()
        return result!
    }

    /// HMAC of bytes already in memory.
    public static func mac(_ message: [UInt8], algorithm: DigestAlgorithm, key: Secret) throws(QBError) -> [UInt8] {
        let context = try HMACContext(algorithm: algorithm, key: key)
        try context.write(message[...])
        return try context.mac()
    }
}
