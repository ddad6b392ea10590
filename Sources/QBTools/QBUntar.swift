import ArgumentParser
import QubesBackup
import QubesBackupCLI

struct QBUntar: QBCommand {
    static let configuration = CommandConfiguration(
        commandName: "qb-untar",
        abstract: "List, extract, print or pass on the members of a tar archive, strictly and safely.",
        discussion: """
        qb-untar reads GNU, PAX, ustar and v7 archives (sparse files of every GNU \
        flavour, long names, multi-volume sets) and refuses anything that ends \
        early: an archive is complete only when an all-zero block ends it, \
        followed by nothing but zeros to the end of the input (normally the \
        second zero block and the record's padding, but one zero block is \
        enough); otherwise the exit status is 3 ("truncated archive").

        A Qubes backup file is a concatenation of small tar archives: read it \
        with -i. Select members with PATTERN arguments: an exact name, a \
        directory ("vm3/" or "vm3" selects everything below it) or a shell glob \
        ("vm3/private.img.*"). With --tar the selected members are written to \
        standard output as a new tar archive, byte for byte, for the next tool \
        of a pipeline. From a file (not a pipe), the data of members not \
        selected is skipped, not read; every header is still read.

        Extraction (-x) never writes outside the target directory: absolute \
        names, ".." components, writes through symbolic links and hard links \
        leaving the target are refused (exit 3), and each file is written \
        under a temporary name and renamed only when complete.

        Examples:
          qb-untar -i -t -f backup.qubes
          qb-untar -x --within vm3/private.img --strip-components 1 \\
            -C restored/work < inner.tar
          set -o pipefail
          qb-untar -i --tar 'vm3/private.img.[0-9]*' < backup.qubes \\
            | qb-hmac --check --passphrase env:P | qb-decrypt --passphrase env:P \\
            | qb-decompress -f gzip | qb-untar -x -C restored
        """,
        version: qbVersion)

    @Flag(name: [.customShort("t"), .customLong("list")], help: "List the members' names (with -v, like tar -tv).")
    var list = false

    @Flag(name: [.customShort("x"), .customLong("extract")], help: "Extract the members into the current directory or the one given with -C.")
    var extract = false

    @Flag(name: [.customShort("O"), .customLong("to-stdout")], help: "Write the contents of the selected regular files to standard output.")
    var toStdout = false

    @Flag(name: .customLong("tar"), help: "Write the selected members to standard output as a tar archive, byte for byte.")
    var passTar = false

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "With -t, a long listing; with -x, the names on standard error.")
    var verbose = false

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("The archive; '-' or none is standard input. Repeat with -M for the volumes of a multi-volume archive.", valueName: "file"))
    var files: [String] = []

    @Flag(name: [.customShort("M"), .customLong("multi-volume")], help: "Read the -f files as the consecutive volumes of one GNU multi-volume archive.")
    var multiVolume = false

    @Option(name: [.customShort("C"), .customLong("directory")], help: ArgumentHelp("Extract into this directory (it must exist).", valueName: "dir"))
    var directory: String?

    @Flag(name: [.customShort("i"), .customLong("ignore-zeros")], help: "Skip zero blocks between members: read concatenated archives such as a Qubes backup file.")
    var ignoreZeros = false

    @Flag(name: [.customShort("p"), .customLong("preserve-permissions")], help: "Keep setuid, setgid and sticky bits when extracting.")
    var keepSpecialBits = false

    @Flag(name: .customLong("same-owner"), help: "Give extracted files their stored owner and group (needs privileges).")
    var sameOwner = false

    @Option(help: ArgumentHelp("With -x, -t or -O: refuse (exit 3) any member that is not PATH or below it.", valueName: "path"))
    var within: String?

    @Option(help: ArgumentHelp("With -x, -t or -O: remove N leading components from member names (and hard-link targets); members with nothing left are skipped.", valueName: "n"))
    var stripComponents = 0

    @OptionGroup var maxSparseEntries: MaxSparseEntriesOption<MaxSparseEntriesHelp>
    enum MaxSparseEntriesHelp: OptionHelp { static let text = "Most regions a sparse member's map may list (default 1000000); raise it only for an archive you trust." }

    @Argument(help: ArgumentHelp("Select members: exact name, directory prefix or shell glob.", valueName: "pattern"))
    var patterns: [String] = []

    func validate() throws {
        let modes = [list, extract, toStdout, passTar].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("choose exactly one of -t, -x, -O and --tar") }
        guard multiVolume || files.count <= 1 else { throw ValidationError("several -f files need -M") }
        guard directory == nil || extract else { throw ValidationError("-C only applies to -x") }
        guard !passTar || (within == nil && stripComponents == 0) else {
            throw ValidationError("--tar passes members on unchanged; --within and --strip-components do not apply")
        }
    }

    func run() throws {
        let reader: TarReader
        var limits = TarLimits.default
        limits.maxSparseEntries = maxSparseEntries.value
        let options = TarReader.Options(ignoreZeros: ignoreZeros, limits: limits)
        if multiVolume {
            let names = files.isEmpty ? ["-"] : files
            reader = TarReader(volumes: TarVolumeOpener { (index: Int) throws(QBError) -> ByteSource? in
                index < names.count ? try FileDescriptor.input(names[index]) : nil
            }, options: options)
        } else {
            reader = TarReader(source: try FileDescriptor.input(files.first), options: options)
        }
        var selection = MemberPatterns(patterns)
        let out = FileDescriptor.standardOutput()
        let listing = LineWriter(out)
        let extractor = extract ? try TarExtractor(targetDirectory: directory ?? ".",
                                                  options: .init(keepSpecialBits: keepSpecialBits, preserveOwnership: sameOwner)) : nil
        let passThrough = passTar ? TarPassThrough(sink: out) : nil
        let buffer = IOBuffer()
        var listState = ListFormat()
        let relocation = try MemberRelocation(within: within, stripComponents: stripComponents)

        while let stored = try reader.next() {
            guard selection.select(stored.name) else { continue }
            guard let entry = passTar ? stored : try relocation.relocate(stored) else { continue }
            if list {
                try listing.line(verbose ? listState.long(entry) : entry.name)
            } else if let extractor {
                if verbose { Diagnostics.printLine(entry.name) }
                for warning in try extractor.extract(entry, from: reader) { Diagnostics.warning(warning) }
            } else if toStdout {
                if entry.kind == .regular { try reader.copyContents(to: out, buffer: buffer) }
            } else if let passThrough {
                try passThrough.copy(entry, from: reader)
            }
        }
        try listing.flush()
        try extractor?.finish()
        try passThrough?.finish()
        if let pattern = selection.firstUnmatched {
            throw QBError(.usage, "not found in archive", subject: pattern)
        }
    }
}

