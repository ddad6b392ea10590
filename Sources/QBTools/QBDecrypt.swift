import ArgumentParser
import QubesBackup
import QubesBackupCLI

#if canImport(Glibc)
import Glibc
#endif

struct QBDecrypt: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-decrypt",
        abstract: "Decrypt openssl enc streams (Qubes backup v2/v3) and scrypt envelopes (v4).",
        discussion: """
        Default: an `openssl enc` stream — Salted__, salt, ciphertext — with the key derived \
        by EVP_BytesToKey and MD5, as every Qubes R2/R3 backup was written (OpenSSL 3's \
        `enc` needs `-md MD5` for these; qb-decrypt does not). Output is byte-identical \
        to `openssl enc -d`; bad padding at the end is an error, never shortened output.

        With --scrypt: one scrypt envelope. The passphrase used is ID!NAME!PASS with \
        --backup-id and --name, NAME!PASS with --name only, PASS with neither. The whole \
        envelope is authenticated before a single byte is written (unlike `scrypt dec`).

        Examples:
          # v3, step 5, once the chunks are authenticated
          cat vm3/private.img.0?? | qb-decrypt --passphrase env:P \\
            | qb-decompress -f gzip | tar -x
          # a v4 file, all its chunks in one stream (keys derived in parallel)
          qb-untar -i --tar 'vm3/private.img.*' < backup.qubes \\
            | qb-decrypt --chunks --header backup-header --passphrase env:P \\
            | qb-decompress -f gzip | qb-untar -x
          # one v4 chunk
          qb-decrypt --scrypt --backup-id "$QB_BACKUP_ID" \\
            --name vm3/private.img.000 --passphrase env:P vm3/private.img.000.enc
        """,
        version: qbVersion)

    @Option(name: .shortAndLong, help: ArgumentHelp("openssl enc cipher (the header's crypto-algorithm).", valueName: "cipher"))
    var cipher = "aes-256-cbc"

    @Option(name: .customLong("md"), help: ArgumentHelp("Key-derivation digest: md5 for Qubes backups; sha256 for files from OpenSSL 1.1 or later defaults.", valueName: "digest"))
    var digest = "md5"

    @Flag(help: "Decrypt one scrypt envelope (v4 chunks and backup-header.hmac).")
    var scrypt = false

    @Flag(help: "Read a tar stream of one file's v4 chunks (NAME.000.enc, NAME.001.enc, ...; from qb-untar -i --tar), check their order, authenticate and decrypt each, write the plaintext.")
    var chunks = false

    @Option(help: ArgumentHelp("With --chunks: take the backup-id from this backup-header (authenticate it first with qb-header --verify).", valueName: "file"))
    var header: String?

    @OptionGroup var jobs: JobsOption<JobsHelp>
    enum JobsHelp: OptionHelp { static let text = "With --chunks: the most chunks derived and decrypted at once (default: the CPUs this process may use); fewer when memory does not pay for that many." }

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "With --chunks: say on standard error how many chunks are derived at once, and why.")
    var verbose = false

    @Option(help: ArgumentHelp("With --scrypt: the member name bound into the passphrase (vm3/private.img.000, backup-header).", valueName: "name"))
    var name: String?

    @Option(help: ArgumentHelp("With --scrypt or --chunks: the backup-id bound into the passphrase (from qb-header --get backup-id).", valueName: "id"))
    var backupId: String?

    @OptionGroup var maxMemory: MaxMemoryOption<MaxMemoryHelp>
    enum MaxMemoryHelp: OptionHelp { static let text = "With --scrypt or --chunks: largest scrypt memory, 128·r·(N+p+2), to accept, in bytes (default: the memory available)." }

    @OptionGroup var maxSize: MaxSizeOption<MaxSizeHelp>
    enum MaxSizeHelp: OptionHelp { static let text = "With --scrypt or --chunks: largest envelope (chunk) to hold in memory while it is authenticated, in bytes." }

    @OptionGroup var passphrase: PassphraseOptions

    @Argument(help: ArgumentHelp("Encrypted input; standard input when absent or -.", valueName: "file"))
    var file: String?

    func validate() throws {
        if scrypt && chunks { throw ValidationError("choose --scrypt or --chunks") }
        if chunks {
            if name != nil { throw ValidationError("--chunks takes each chunk's name from the stream; drop --name") }
            if (backupId == nil) == (header == nil) { throw ValidationError("--chunks needs --backup-id ID or --header FILE") }
            return
        }
        if header != nil { throw ValidationError("--header goes with --chunks") }
        if !scrypt && (name != nil || backupId != nil) { throw ValidationError("--name and --backup-id go with --scrypt or --chunks") }
        if backupId != nil && name == nil { throw ValidationError("--backup-id needs --name") }
    }

    func run() throws {
        let input = try FileDescriptor.input(file)
        let output = try Output.binary(what: "decrypted data")
        let secret = try passphrase.read()
        if chunks {
            var id = backupId
            if let header {
                let parsed = try BackupHeader(parsing: readAll(from: FileDescriptor.input(header), limit: BackupHeader.maximumSize, what: "backup-header"))
                guard parsed.version == 4, let headerID = parsed.backupID else {
                    throw QBError(.unsupported, "--chunks decrypts version 4 chunks; this is a version \(parsed.version) backup", subject: header,
                                  hint: "v3: cat the verified chunks into qb-decrypt")
                }
                id = headerID
            }
            let chunks = ChunkReader(reader: TarReader(source: input), layout: .envelopes, maximumChunkSize: maxSize.value)
            try ChunkStream.release(chunks, opener: .scrypt(backupID: id!, passphrase: secret, limits: maxMemory.limits),
                                    jobs: jobs.options(verbose: verbose), to: output)
            return
        }
        if scrypt {
            let envelope = try readAll(from: input, limit: maxSize.value, what: "scrypt envelope")
            let bound = secret.bound(to: [backupId, name].compactMap { $0 })
            let plaintext = try ScryptFile.decrypt(envelope, passphrase: bound,
                                                   limits: maxMemory.limits, subject: name ?? input.name,
                                                   wrongKeyHint: backupId == nil ? QBError.wrongPassphraseOrTampered
                                                       : "wrong passphrase, or the chunk was renamed or comes from another backup")
            try output.write(plaintext[...])
            return
        }
        let decryptor = try OpenSSLEncDecryptor(cipher: cipher, digest: digest, passphrase: secret, downstream: output)
        do { try pump(from: input, to: decryptor) } catch { throw error.about(input.name) }
    }
}
