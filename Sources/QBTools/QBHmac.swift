import ArgumentParser
import QubesBackup
import QubesBackupCLI

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

        With --check, reads a tar stream of v2/v3 chunks and their HMACs (NAME.000, \
        NAME.000.hmac, NAME.001, ...: what `qb-untar -i --tar` passes on), holds each \
        chunk until its .hmac has arrived and matched, and only then writes the chunk's \
        bytes to standard output. Gaps, reordering, repeats, a chunk without its .hmac \
        and an .hmac without its chunk are refused (exit 3); a mismatch exits 1. \
        Nothing unverified is ever written: at most one chunk per job is held in memory.

        Examples:
          # step 2 of the emergency restore: authenticate the header
          qb-untar -i -x -f backup.qubes backup-header backup-header.hmac
          qb-hmac --verify backup-header.hmac --passphrase env:P backup-header
          # steps 4 to 7 for one v3 file, streaming
          set -o pipefail
          qb-untar -i --tar 'vm3/private.img.[0-9]*' < backup.qubes \\
            | qb-hmac --check --passphrase env:P | qb-decrypt --passphrase env:P \\
            | qb-decompress -f gzip | qb-untar -x -C restored
        """,
        version: qbVersion)

    @Option(name: .shortAndLong, help: ArgumentHelp("Digest: sha512 (default), sha256, sha1, md5, or any digest OpenSSL knows. With --verify, the default tries the digests Qubes used.", valueName: "digest"))
    var algorithm: String?

    @Option(help: ArgumentHelp("Verify FILE against this .hmac file (text or scrypt envelope).", valueName: "hmacfile"))
    var verify: String?

    @Flag(help: "Read a tar stream of chunks and their .hmac files; write each chunk once it is verified.")
    var check = false

    @OptionGroup var maxSize: MaxSizeOption<MaxSizeHelp>
    enum MaxSizeHelp: OptionHelp { static let text = "With --check: largest chunk to hold in memory while it is verified, in bytes." }

    @Option(help: ArgumentHelp("With --check: the stream starts at this chunk of its file (to check one v2 volume alone; default 0).", valueName: "index"))
    var from = 0

    @OptionGroup var jobs: JobsOption<JobsHelp>
    enum JobsHelp: OptionHelp { static let text = "With --check: the most chunks verified at once (default: the CPUs this process may use); fewer when memory does not hold that many chunks." }

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "With --check: say on standard error how many chunks are verified at once, and why.")
    var verbose = false

    @Option(help: ArgumentHelp("Member name bound into a scrypt envelope's passphrase (default: FILE's base name).", valueName: "name"))
    var name: String?

    @OptionGroup var maxMemory: MaxMemoryOption<MaxMemoryHelp>
    enum MaxMemoryHelp: OptionHelp { static let text = "With --verify and a scrypt envelope: largest scrypt memory, 128·r·(N+p+2), to accept, in bytes (default: the memory available)." }

    @OptionGroup var passphrase: PassphraseOptions

    @Argument(help: ArgumentHelp("The data to authenticate; standard input when absent or -.", valueName: "file"))
    var file: String?

    func validate() throws {
        if name != nil && verify == nil { throw ValidationError("--name only applies with --verify") }
        if check && verify != nil { throw ValidationError("choose --check or --verify") }
        if from != 0 && !check { throw ValidationError("--from goes with --check") }
        if from < 0 { throw ValidationError("--from must not be negative") }
    }

    func run() throws {
        let requested = try algorithm.map { name throws in
            guard let digest = DigestAlgorithm(name) else {
                throw QBError(.usage, "unknown digest '\(name)'", hint: "see `openssl list -digest-algorithms`")
            }
            return digest
        }
        if check {
            let input = try FileDescriptor.input(file)
            let output = try Output.binary(what: "chunk data")
            let chunks = ChunkReader(reader: TarReader(source: input), layout: .hmacPairs, maximumChunkSize: maxSize.value, firstIndex: from)
            try ChunkStream.release(chunks, opener: .hmac(digest: requested, passphrase: try passphrase.read()),
                                    jobs: jobs.options(verbose: verbose), to: output)
            return
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
                try ScryptEnvelope.verifyCopy(of: data, envelope: expected, name: member, passphrase: secret, limits: maxMemory.limits)
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
