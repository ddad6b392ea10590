/// v4 authentication of the header: `backup-header.hmac` is a scrypt envelope
/// of the header under `backup-header!PASS` (FORMAT.md §5.2).
public enum ScryptEnvelope {
    /// `scrypt` followed by format version 0.
    public static func hasMagic(_ bytes: [UInt8]) -> Bool {
        bytes.starts(with: Array("scrypt".utf8) + [0])
    }

    /// Decrypts the envelope with `NAME!PASS` and requires its plaintext to
    /// equal `data` byte for byte. With `slots`, the derivation takes one.
    public static func verifyCopy(of data: [UInt8], envelope: [UInt8], name: String, passphrase: Secret,
                                  limits: ScryptLimits = .affordable(), slots: JobSlots? = nil) throws(QBError) {
        func decrypt() throws(QBError) -> [UInt8] {
            try ScryptFile.decrypt(envelope, passphrase: passphrase.bound(to: [name]), limits: limits, subject: name, slots: slots)
        }
        let plaintext: [UInt8]
        if let slots {
            let memory = ScryptHeader.memory(of: envelope, limits: limits) ?? 0
            plaintext = try slots.withSlot(bytes: memory) { () throws(QBError) -> [UInt8] in try decrypt() }
        } else {
            plaintext = try decrypt()
        }
        guard constantTimeEqual(plaintext, data) else {
            throw QBError(.authentication, "does not match its authenticated copy", subject: name,
                          hint: QBError.wrongPassphraseOrTampered)
        }
    }
}
