internal import COpenSSL

/// Cipher names from a backup header, checked against what OpenSSL provides.
public enum CipherName {
    /// Whether `openssl enc` could use the cipher: OpenSSL knows it and it is
    /// not an AEAD or wrap mode, which `enc` refuses.
    public static func isUsable(_ name: String) -> Bool {
        let lower = name.lowercased()
        guard !lower.isEmpty, let cipher = EVP_CIPHER_fetch(nil, lower, nil) else {
            ERR_clear_error()
            return false
        }
        defer { EVP_CIPHER_free(cipher) }
        let flags = EVP_CIPHER_get_flags(cipher)
        if flags & UInt(EVP_CIPH_FLAG_AEAD_CIPHER) != 0 { return false }
        let mode = Int32(flags & UInt(EVP_CIPH_MODE))
        return mode != EVP_CIPH_WRAP_MODE && mode != EVP_CIPH_XTS_MODE && mode != EVP_CIPH_GCM_MODE
            && mode != EVP_CIPH_CCM_MODE && mode != EVP_CIPH_OCB_MODE
    }
}
