import ArgumentParser
import QubesBackup
import QubesBackupCLI

@main
struct QBHmac: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-hmac",
        abstract: "Compute or verify the HMAC of a Qubes backup member, as `openssl dgst -hmac` does.",
        discussion: """
        Without --verify, prints the line OpenSSL 3's `openssl dgst -DIGEST -hmac PASS` prints \
        for the same input, without putting the passphrase on the command line.

        With --verify, checks FILE against HMACFILE and prints `FILE: OK` or `FILE: FAILED`. \
        HMACFILE may be the text any OpenSSL version wrote (v2/v3 backups) or a scrypt \
        envelope (v4 `backup-header.hmac`), which is decrypted with the passphrase NAME!PASS \
        (NAME is FILE's base name, or --name) and compared with FILE byte for byte.

        Step 2 of the emergency restore (authenticate the header):
          qb-untar -i -x -f BACKUP backup-header backup-header.hmac
          qb-hmac --verify backup-header.hmac backup-header
        """)

    @Option(name: .shortAndLong, help: ArgumentHelp("Digest: sha512 (default), sha256, sha1, md5, or any digest OpenSSL knows. With --verify, the default tries the digests Qubes used.", valueName: "digest"))
    var algorithm: String?

    @Option(help: ArgumentHelp("Verify FILE against this .hmac file (text or scrypt envelope).", valueName: "hmacfile"))
    var verify: String?

    @Option(help: ArgumentHelp("Member name bound into a scrypt envelope's passphrase (default: FILE's base name).", valueName: "name"))
    var name: String?

    @OptionGroup var passphrase: PassphraseOptions

    @Argument(help: ArgumentHelp("The data to authenticate; standard input when absent or -.", valueName: "file"))
    var file: String?

    func validate() throws {
        if name != nil && verify == nil { throw ValidationError("--name only applies with --verify") }
    }

    func run() throws {
        let requested = try algorithm.map { name throws in
            guard let digest = DigestAlgorithm(name) else {
                throw QBError(.usage, "unknown digest '\(name)'", hint: "see `openssl list -digest-algorithms`")
            }
            return digest
        }
        let displayName = file.flatMap { $0 == "-" ? nil : $0 }
        guard let verify else {
            let secret = try passphrase.read()
            let digest = requested ?? DigestAlgorithm("sha512")!
            let context = try HMACContext(algorithm: digest, key: secret)
            try pump(from: FileDescriptor.input(file), to: context)
            try Output.line(DigestLine.format(mac: try context.mac(), algorithm: digest, fileName: displayName))
            return
        }

        let shown = displayName ?? "stdin"
        let expected = try readAll(from: FileDescriptor.input(verify), limit: DigestLine.maximumFileSize, what: ".hmac file")
        let secret = try passphrase.read()
        do {
            if ScryptEnvelope.hasMagic(expected) {
                guard let member = name ?? displayName.map(baseName) else {
                    throw QBError(.usage, "reading standard input: give the member name with --name")
                }
                let data = try readAll(from: FileDescriptor.input(file), limit: DigestLine.maximumFileSize, what: "file authenticated by a scrypt copy")
                try ScryptEnvelope.verifyCopy(of: data, envelope: expected, name: member, passphrase: secret)
            } else {
                let line = try DigestLine(parsing: expected, subject: verify)
                _ = try HMACVerifier.verify(source: FileDescriptor.input(file), expected: line, passphrase: secret,
                                            requested: requested, subject: shown)
            }
        } catch let error as QBError where error.kind == .authentication {
            try Output.line("\(shown): FAILED")
            Diagnostics.error(error.about(shown))
            throw ExitWith(.authenticationFailed)
        }
        try Output.line("\(shown): OK")
    }
}

private func baseName(_ path: String) -> String {
    String(path.split(separator: "/").last ?? Substring(path))
}
