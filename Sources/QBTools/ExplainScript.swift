import QubesBackup

/// The small-tool pipelines that do what a qb-restore run does (FORMAT.md
/// §11, "streaming" column): a bash script that reads the backup once per
/// file where qb-restore reads it once.
struct ExplainScript {
    let backup: String
    let directory: String
    let header: BackupHeader
    let authentication: AuthenticationMethod
    /// The --passphrase source given; pass:TEXT and the terminal prompt
    /// are replaced by an environment variable.
    let passphrase: String?
    let verifyOnly: Bool
    let qubesXMLChunks: Int
    /// --files: each VM's private.img is read by qb-fs after its pipeline.
    let readFilesystems: Bool
    let filesOnly: Bool
    /// How many chunks qb-restore works on at once; each qb-decrypt
    /// --chunks or qb-hmac --check of the script chooses the same way.
    let plan: JobPlan?

    private var passphraseSource: String {
        if let passphrase, !passphrase.hasPrefix("pass:") { return passphrase }
        return "env:QB_PASSPHRASE"
    }

    func lines(files: [(file: String, chunks: Int)], selection: RestoreSelection) -> [String] {
        var out = [
            "#!/usr/bin/env bash",
            "# What qb-restore does, one small tool per step (Qubes backup format version \(header.version)).",
            "# pipefail: a stage that fails (a tampered chunk, a wrong passphrase) must fail its",
            "# whole pipeline, or a short output would pass for a complete one.",
            "set -euo pipefail",
            "backup=\(quote(backup))",
        ]
        if let plan {
            out.append("# Chunks at once: \(plan.description).")
            out.append("# qb-decrypt --chunks and qb-hmac --check below choose the same way (-j N is a maximum; -v says what was chosen).")
        }
        if backup == "-" { out.append("# qb-restore read the backup from standard input; these steps need it as a file: set backup= above.") }
        if passphraseSource == "env:QB_PASSPHRASE" && passphrase.map({ !$0.hasPrefix("env:QB_PASSPHRASE") }) ?? true {
            out.append("# The passphrase is read from $QB_PASSPHRASE: read -rs QB_PASSPHRASE && export QB_PASSPHRASE")
        }
        out += [
            "pass=\(quote(passphraseSource))",
            "tmp=$(mktemp -d)",
            "trap 'rm -rf \"$tmp\"' EXIT",
            "",
            "# 1-3. authenticate the header, then validate it (compression filter from the allow-list only)",
            "qb-untar -i -x -C \"$tmp\" -f \"$backup\" backup-header backup-header.hmac",
            "qb-header --verify \"$tmp/backup-header.hmac\" --passphrase \"$pass\" \"$tmp/backup-header\"",
        ]
        if qubesXMLChunks > 0 {
            out += ["", "# 4-5. qubes.xml: authenticate, decrypt, decompress; list the VMs"]
            out += pipeline(file: "qubes.xml", chunks: qubesXMLChunks, last: "qb-untar -O\(volumeFlag) --within qubes.xml", output: " > \"$tmp/qubes.xml\"")
            out.append("qb-header --vms \"$tmp/qubes.xml\"")
        }
        if !verifyOnly { out += ["", "target=\(quote(directory))"] }
        for destination in verifyOnly ? [] : selection.selected {
            out.append("mkdir \"$target\"/\(quote(destination.directoryName))")
        }
        for (file, chunks) in files {
            if verifyOnly {
                out += ["", "# \(file)\(selection.owner(of: file).map { " (VM \($0.name))" } ?? "")"]
                out += pipeline(file: file, chunks: chunks, last: "qb-untar -t\(volumeFlag) --within \(quote(file))", output: " > /dev/null")
                continue
            }
            guard let destination = selection.destination(of: file) else { continue }
            out += ["", "# \(file) → \(destination.directoryName)/"]
            let strip = destination.stripComponents
            out += pipeline(file: file, chunks: chunks,
                            last: "qb-untar -x\(volumeFlag) --within \(quote(file)) --strip-components \(strip) -C \"$target\"/\(quote(destination.directoryName))",
                            output: "")
            if readFilesystems && selection.privateVolumeDestination(of: file) != nil {
                let vm = "\"$target\"/" + quote(destination.directoryName)
                out += ["", "# 8. the files of \(destination.directoryName)'s private volume, without mount"]
                out.append("qb-fs -x -C \(vm)/files \(vm)/private.img")
                if filesOnly { out.append("rm \(vm)/private.img") }
            }
        }
        return out
    }

    private var volumeFlag: String { header.version == 2 ? " -M" : "" }

    /// The stages that authenticate, decrypt and decompress the selected
    /// chunks, each as a command reading the previous one's output.
    private func stages(from index: Int = 0) -> [String] {
        var list: [String] = []
        switch authentication {
        case .scrypt:
            list.append("qb-decrypt --chunks --backup-id \(quote(header.backupID ?? "")) --passphrase \"$pass\"")
        case .hmac(let digest):
            list.append("qb-hmac --check" + (index > 0 ? " --from \(index)" : "") + " -a \(digest.name) --passphrase \"$pass\"")
            if header.encrypted { list.append("qb-decrypt -c \(quote(header.cryptoAlgorithm ?? "aes-256-cbc")) --passphrase \"$pass\"") }
        }
        if header.compressed, let filter = header.compressionFilter { list.append("qb-decompress -f \(filter.rawValue)") }
        return list
    }

    /// v3/v4: one pipeline over all the file's chunks. v2: every chunk is
    /// a tar volume of its own, opened alone and joined by `qb-untar -M`.
    private func pipeline(file: String, chunks: Int, last: String, output: String) -> [String] {
        if header.version == 2 {
            var lines = [last + " \\"]
            for index in 0..<chunks {
                let chunk = ChunkName(file: file, index: index, suffix: .none).chunk
                let select = "qb-untar -i --tar -f \"$backup\" \(quote(globEscaped(chunk))) \(quote(globEscaped(chunk + ".hmac")))"
                lines.append("  -f <(" + ([select] + stages(from: index)).joined(separator: " | ") + ")" + (index == chunks - 1 ? output : " \\"))
            }
            return lines
        }
        let select = "qb-untar -i --tar -f \"$backup\" \(quote(globEscaped(file) + ".[0-9]*"))"
        return [([select] + stages()).joined(separator: " \\\n  | ") + " \\\n  | " + last + output]
    }

    private func globEscaped(_ s: String) -> String {
        var out = ""
        for c in s {
            if "*?[\\".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }

    private func quote(_ s: String) -> String {
        if !s.isEmpty && s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./:=@%+,".contains($0) }) && s.allSatisfy(\.isASCII) { return s }
        return "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
