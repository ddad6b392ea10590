internal import COpenSSL

/// The OpenSSL pieces of a scrypt envelope besides the key derivation:
/// AES-256-CTR and SHA-256. Each call has its own context, so envelopes can
/// be opened on several threads.
enum OpenSSLPrimitives {
    /// AES-256-CTR with a zero initial counter block, as the scrypt file
    /// format uses it (a 128-bit big-endian counter from 0), on `range` of
    /// `bytes` in place: a 100 MiB chunk needs no second 100 MiB.
    static func aes256CTR(key: ArraySlice<UInt8>, inPlace bytes: inout [UInt8], range: Range<Int>) throws(QBError) {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw QBError.openSSL("cannot allocate a cipher context") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let iv = [UInt8](repeating: 0, count: 16)
        let keyBytes = Array(key)
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_ctr(), nil, keyBytes, iv) == 1 else {
            throw QBError.openSSL("cannot initialise AES-256-CTR")
        }
        // CTR works on any length; update in pieces under Int32.max, each
        // written over itself (OpenSSL allows exactly overlapping buffers).
        let ok: Bool = bytes.withUnsafeMutableBytes { raw in
            var done = range.lowerBound
            while done < range.upperBound {
                let n = min(range.upperBound - done, 1 << 30)
                let at = raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + done
                var written: Int32 = 0
                guard EVP_DecryptUpdate(ctx, at, &written, at, Int32(n)) == 1, Int(written) == n else { return false }
                done += n
            }
            return true
        }
        guard ok else { throw QBError.openSSL("AES-256-CTR failed") }
    }

    static func sha256(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let data = Array(bytes)
        _ = SHA256(data, data.count, &out)
        return out
    }
}
