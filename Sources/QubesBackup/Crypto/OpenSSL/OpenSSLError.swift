internal import COpenSSL

extension QBError {
    /// OpenSSL refused an operation valid input cannot make fail: a
    /// `.cryptoLibrary` error with OpenSSL's own reason.
    static func openSSL(_ what: String, subject: String? = nil) -> QBError {
        openSSL(.cryptoLibrary, what, subject: subject)
    }

    /// The newest OpenSSL error-queue entry as text, and the queue cleared, so
    /// a failed call's own reason reaches the message.
    static func openSSL(_ kind: Kind, _ what: String, subject: String? = nil) -> QBError {
        var detail = ""
        let code = ERR_get_error()
        if code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            detail = ": " + buffer.stringBeforeNUL
        }
        ERR_clear_error()
        return QBError(kind, what + detail, subject: subject)
    }
}

/// Compares two byte strings in time independent of where they differ.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 } }
}
