#if canImport(Glibc)
import Glibc
#endif
import QubesBackup

/// One-line messages on standard error: `qb-xxx: subject: what (hint)`.
public enum Diagnostics {
    /// The running tool's name: argv[0]'s last component (`qb-untar`, also
    /// when the multi-call `qb` runs through a symbolic link of that name),
    /// or what `qb TOOL` set in `toolNameOverride`.
    public static var toolName: String {
        if let name = toolNameOverride { return name }
        let arg0 = CommandLine.arguments.first ?? "qb"
        return arg0.split(separator: "/").last.map(String.init) ?? arg0
    }

    /// Set once, before any thread starts, by `qb untar …` (the subcommand
    /// form of the multi-call binary), whose argv[0] is `qb`.
    nonisolated(unsafe) public static var toolNameOverride: String?

    public static func error(_ error: QBError) {
        printLine(toolName + ": " + error.description)
    }

    public static func error(_ message: String) {
        printLine(toolName + ": " + message)
    }

    public static func warning(_ message: String) {
        printLine(toolName + ": warning: " + message)
    }

    /// Writes one line to standard error in a single write(2), so lines from the
    /// tools of one pipeline do not interleave mid-line.
    public static func printLine(_ line: String) { printPartial(line + "\n") }

    /// Writes text to standard error in one write(2), without a newline.
    public static func printPartial(_ text: String) {
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(2, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                done += n
            }
        }
    }
}

/// Standard output for text results (digest lines, listings, verdicts).
public enum Output {
    public static func line(_ text: String) throws {
        let out = FileDescriptor.standardOutput()
        let bytes = Array((text + "\n").utf8)
        try out.write(bytes.span.bytes)
    }
}

extension Output {
    /// Standard output for binary data; a terminal is refused (age's rule),
    /// since plaintext or image bytes there help nobody.
    public static func binary(what: String) throws -> FileDescriptor {
        let out = FileDescriptor.standardOutput()
        if out.isTerminal {
            throw QBError(.usage, "refusing to write \(what) to a terminal", hint: "redirect standard output to a file or a pipe")
        }
        return out
    }
}

/// The directory a tool extracts into.
public enum TargetDirectory {
    /// Creates `path` and its missing parents (as `mkdir -p`, mode 0755
    /// before the umask); an existing directory is fine.
    public static func create(_ path: String) throws(QBError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += String(part)
            if mkdir(prefix, 0o755) != 0 {
                let code = errno
                var info = stat()
                guard code == EEXIST, stat(prefix, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                    throw QBError(.io(code == EEXIST ? ENOTDIR : code),
                                  "cannot create directory: \(String(cString: strerror(code == EEXIST ? ENOTDIR : code)))", subject: prefix)
                }
            }
            prefix += "/"
        }
    }
}
