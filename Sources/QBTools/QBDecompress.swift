import ArgumentParser
import QubesBackup
import QubesBackupCLI

struct QBDecompress: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-decompress",
        abstract: "Decompress gzip, bzip2, xz, lzma or zstd with built-in codecs, never an external program.",
        discussion: """
        Reads FILE (or standard input) and writes the decompressed bytes to standard output. \
        FILTER is the backup header's compression-filter, one of: \(CompressionFilter.allowList); \
        or 'auto' to recognise the format by its magic bytes (lzma has none and must be named). \
        Any other name is refused: the real restore ran the program a backup named, which is \
        Qubes Security Bulletin 51; qb decodes with linked libraries only.

        The stream must end exactly where its format ends: a truncated stream, trailing \
        garbage, a bad checksum, or magic bytes that do not match FILTER exit with status 3.

        Examples:
          qb-decompress -f xz vm1-private.img.tar.xz > vm1-private.img.tar
          # v3: after authentication and decryption, before the inner archive
          set -o pipefail
          qb-untar -i --tar 'vm1/private.img.[0-9]*' < backup.qubes \\
            | qb-hmac --check --passphrase env:P | qb-decrypt --passphrase env:P \\
            | qb-decompress -f gzip | qb-untar -x -C restored
        """,
        version: qbVersion
    )

    @Option(name: [.customShort("f"), .customLong("filter")],
            help: ArgumentHelp("Compression filter: one of the eight allowed names or 'auto'.", valueName: "FILTER"))
    var filter: String = "auto"

    @Option(name: .customLong("inflate"),
            help: ArgumentHelp("gzip decoder: 'isal' (fast) or 'zlib' (reference).", valueName: "ENGINE"))
    var inflate: String = Inflater.isal.rawValue

    @Argument(help: ArgumentHelp("Compressed input; '-' or none for standard input.", valueName: "FILE"))
    var file: String?

    func run() throws {
        // Refuse the filter before opening anything: nothing named by a backup runs.
        let chosen: CompressionFilter? = filter == "auto" ? nil : try CompressionFilter(headerName: filter)
        guard let inflater = Inflater(rawValue: inflate) else {
            throw ValidationError("--inflate must be 'isal' or 'zlib', not '\(inflate)'")
        }
        var options = DecompressionOptions()
        options.inflater = inflater
        let input = try FileDescriptor.input(file)
        let output = try Output.binary(what: "decompressed data")
        let decompressor = makeDecompressor(chosen, downstream: output, options: options)
        do {
            try pump(from: input, to: decompressor)
        } catch {
            throw error.about(input.name)
        }
    }
}
