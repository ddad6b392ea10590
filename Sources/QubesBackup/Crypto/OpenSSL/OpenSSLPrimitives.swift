internal import COpenSSL

/// The OpenSSL pieces of a scrypt envelope besides the key derivation:
/// AES-256-CTR and SHA-256. Each call has its own context, so envelopes can
/// be opened on several threads.
enum OpenSSLPrimitives {
    /// AES-256-CTR with a zero initial counter block, as the scrypt file
    /// format uses it (a 128-bit big-endian counter from 0).
    static func aes256CTR(key: ArraySlice<UInt8>, _ input: ArraySlice<UInt8>) throws(QBError) -> [UInt8] {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw QBError.openSSL(.io(0), "cannot allocate a cipher context") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let iv = [UInt8](repeating: 0, count: 16)
        let keyBytes = Array(key)
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_ctr(), nil, keyBytes, iv) == 1 else {
            throw QBError.openSSL(.io(0), "cannot initialise AES-256-CTR")
        }
        var output = [UInt8](repeating: 0, count: input.count + 16)
        var written: Int32 = 0
        // CTR works on any length; update the whole input in pieces under Int32.max.
        var done = 0
        let ok: Bool = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                while done < src.count {
                    let n = min(src.count - done, 1 << 30)
                    guard EVP_DecryptUpdate(ctx, dst.baseAddress!.assumingMemoryBound(to: UInt8.self) + done, &written,
                                            src.baseAddress!.assumingMemoryBound(to: UInt8.self) + done, Int32(n)) == 1 else { return false }
                    done += Int(written)
                }
                return true
            }
        }
        guard ok else { throw QBError.openSSL(.io(0), "AES-256-CTR failed") }
        output.removeLast(output.count - done)
        return output
    }

    static func sha256(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let data = Array(bytes)
        _ = SHA256(data, data.count, &out)
        return out
    }
}
