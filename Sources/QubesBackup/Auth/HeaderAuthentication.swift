/// Authenticating `backup-header` before a single field of it is believed
/// (FORMAT.md §5). The header names its own digest, but may not be read
/// before it is authenticated, so the method is found by trying.
public enum HeaderAuthentication {
    /// Verifies the header against the bytes of `backup-header.hmac`: a scrypt
    /// envelope (v4) or HMAC text (v2/v3) in the digests Qubes used. The
    /// envelope's scrypt parameters are checked against `limits`; with
    /// `slots`, its derivation takes one.
    public static func verify(header: [UInt8], hmacFile: [UInt8], passphrase: Secret,
                              limits: ScryptLimits = .affordable(), slots: JobSlots? = nil) throws(QBError) -> AuthenticationMethod {
        try DigestLine.checkFileSize(hmacFile, subject: "backup-header.hmac")
        if ScryptEnvelope.hasMagic(hmacFile) {
            try ScryptEnvelope.verifyCopy(of: header, envelope: hmacFile, name: "backup-header", passphrase: passphrase,
                                          limits: limits, slots: slots)
            return .scrypt
        }
        let line = try DigestLine(parsing: hmacFile, subject: "backup-header.hmac")
        let digest = try HMACVerifier.verify(bytes: header.span.bytes, expected: line, passphrase: passphrase,
                                             subject: "backup-header")
        return .hmac(digest)
    }

    /// Checks Qubes does not make (FORMAT.md §4.5): a scrypt-authenticated
    /// header is version 4; an HMAC-authenticated one is version 2 or 3 and
    /// names the digest that verified it.
    public static func checkConsistency(_ header: BackupHeader, method: AuthenticationMethod) throws(QBError) {
        switch method {
        case .scrypt where header.version != 4:
            throw QBError(.malformed, "header authenticated by scrypt claims version \(header.version)", subject: "backup-header")
        case .hmac(let digest):
            guard header.version < 4 else {
                throw QBError(.malformed, "version 4 header authenticated by an HMAC", subject: "backup-header")
            }
            if let named = header.hmacAlgorithm, DigestAlgorithm(named)?.label != digest.label {
                throw QBError(.malformed, "header names hmac-algorithm \(named) but was authenticated with \(digest.name)", subject: "backup-header")
            }
        default: break
        }
    }
}
