internal import COpenSSL

/// Decrypts an `openssl enc` stream (FORMAT.md §6.1): `Salted__`, an 8-byte
/// salt, then ciphertext; key and IV from `EVP_BytesToKey` with one
/// iteration. Pushes plaintext to `downstream` in large blocks.
///
/// A block cipher holds back its last block until `finish()`, where the
/// padding is checked: a wrong passphrase or damaged data shows up there as
/// `.authentication`, never as silently shortened output. The bytes released
/// before that point are not authenticated by this stage — Qubes' formats
/// authenticate every chunk before it reaches decryption.
public final class OpenSSLEncDecryptor: ByteSink {
    public static let magic = Array("Salted__".utf8)

    private let cipher: OpaquePointer
    private let digest: OpaquePointer
    private let passphrase: Secret
    private let downstream: ByteSink
    private var context: OpaquePointer?
    private var header: [UInt8] = []
    /// Plaintext of one slice of input, with room for the block the
    /// cipher held back from the slice before.
    private let output: IOBuffer
    /// Input is decrypted in slices of at most this many bytes.
    private let sliceSize: Int
    private let blockSize: Int

    /// - Parameters:
    ///   - cipher: any cipher OpenSSL provides that `openssl enc` can use.
    ///   - digest: the key-derivation digest: `md5` for everything Qubes wrote
    ///     (OpenSSL 1.0's default), `sha256` for files from newer openssl.
    ///   - sliceSize: input is decrypted, and its plaintext passed downstream,
    ///     in slices of at most this many bytes (plus one held-back block).
    public init(cipher cipherName: String = "aes-256-cbc", digest digestName: String = "md5",
                passphrase: Secret, downstream: ByteSink, sliceSize: Int = IOBuffer.defaultCapacity) throws(QBError) {
        guard CipherName.isUsable(cipherName), let cipher = EVP_CIPHER_fetch(nil, cipherName.lowercased(), nil) else {
            ERR_clear_error()
            throw QBError(.unsupported, "unknown or unusable cipher '\(cipherName)'", hint: "see `openssl enc -list`")
        }
        guard let digest = EVP_MD_fetch(nil, digestName.lowercased(), nil) else {
            EVP_CIPHER_free(cipher)
            ERR_clear_error()
            throw QBError(.unsupported, "unknown digest '\(digestName)'")
        }
        self.cipher = cipher
        self.digest = digest
        self.passphrase = passphrase
        self.downstream = downstream
        self.blockSize = Int(EVP_CIPHER_get_block_size(cipher))
        self.sliceSize = Swift.max(sliceSize, 1)
        self.output = IOBuffer(capacity: self.sliceSize + 64)
    }

    deinit {
        if let context { EVP_CIPHER_CTX_free(context) }
        EVP_CIPHER_free(cipher)
        EVP_MD_free(digest)
    }

    public func write(_ bytes: RawSpan) throws(QBError) {
        var rest = bytes
        if context == nil {
            let take = min(16 - header.count, rest.byteCount)
            header.append(contentsOf: rest.extracting(0..<take))
            rest = rest.extracting(take...)
            guard header.count == 16 else { return }
            try start()
        }
        // Slices small enough that the output (input + one block) fits the buffer.
        while rest.byteCount > 0 {
            let n = min(rest.byteCount, sliceSize)
            try decrypt(rest.extracting(0..<n))
            rest = rest.extracting(n...)
        }
    }

    public func finish() throws(QBError) {
        guard let context else {
            throw QBError(.truncated, "input is shorter than an openssl enc header")
        }
        output.clear()
        let ok = output.fillFreeSpace { space -> Int? in
            var length: Int32 = 0
            guard EVP_DecryptFinal_ex(context, space.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1 else { return nil }
            return Int(length)
        }
        ERR_clear_error()
        guard ok else {
            throw QBError(.authentication, "bad padding at the end of the stream", hint: "wrong passphrase or corrupted data")
        }
        try flush()
        try downstream.finish()
    }

    private func start() throws(QBError) {
        guard header.starts(with: Self.magic) else {
            throw QBError(.malformed, "not an openssl enc stream (no Salted__ header)",
                          hint: "unencrypted backups need no qb-decrypt")
        }
        var key = [UInt8](repeating: 0, count: Int(EVP_MAX_KEY_LENGTH))
        var iv = [UInt8](repeating: 0, count: Int(EVP_MAX_IV_LENGTH))
        defer { OPENSSL_cleanse(&key, key.count); OPENSSL_cleanse(&iv, iv.count) }
        let salt = Array(header[8..<16])
        let made = passphrase.bytes.withUnsafeBytes { pass in
            EVP_BytesToKey(cipher, digest, salt, pass.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(pass.count), 1, &key, &iv)
        }
        guard made > 0, let ctx = EVP_CIPHER_CTX_new() else { throw QBError.openSSL("key derivation failed") }
        context = ctx
        guard EVP_DecryptInit_ex2(ctx, cipher, key, iv, nil) == 1 else {
            throw QBError.openSSL("cannot initialise the cipher")
        }
    }

    private func decrypt(_ input: RawSpan) throws(QBError) {
        let context = self.context!
        output.clear()
        let ok = input.withUnsafeBytes { src in
            output.fillFreeSpace { dst -> Int? in
                var length: Int32 = 0
                guard EVP_DecryptUpdate(context, dst.baseAddress!.assumingMemoryBound(to: UInt8.self), &length,
                                        src.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(src.count)) == 1 else { return nil }
                return Int(length)
            }
        }
        guard ok else { throw QBError.openSSL("decryption failed") }
        try flush()
    }

    private func flush() throws(QBError) {
        guard !output.isEmpty else { return }
        try downstream.write(block: output)
    }
}
