import Foundation
import Testing
import QBTestSupport

// qb-decompress against the real compressors, run at test time: every output
// is compared byte for byte with the original, every refusal is checked for
// its exit status, its stderr line and what reached stdout.

struct Codec: Sendable, CustomTestStringConvertible {
    /// The filter name given to qb-decompress.
    var filter: String
    /// The program that must be installed to make the input.
    var program: String
    /// Shell words that compress the file named after them to stdout.
    var compress: String
    /// The stream format, as qb-decompress names it in messages.
    var format: String
    var testDescription: String { filter }

    /// gzip-compatible streams are also decoded with zlib.
    var inflaters: [String] { format == "gzip" ? ["isal", "zlib"] : ["isal"] }
}

let allCodecs = [
    Codec(filter: "gzip", program: "gzip", compress: "gzip -c", format: "gzip"),
    Codec(filter: "pigz", program: "pigz", compress: "pigz -c", format: "gzip"),
    Codec(filter: "bzip2", program: "bzip2", compress: "bzip2 -c", format: "bzip2"),
    Codec(filter: "pbzip2", program: "pbzip2", compress: "pbzip2 -c", format: "bzip2"),
    Codec(filter: "xz", program: "xz", compress: "xz -c", format: "xz"),
    Codec(filter: "lzma", program: "lzma", compress: "lzma -c", format: "lzma"),
    Codec(filter: "zstd", program: "zstd", compress: "zstd -q -c", format: "zstd"),
    Codec(filter: "zstdmt", program: "zstd", compress: "zstd -q -T0 -c", format: "zstd"),
]

/// The codecs whose compressor is installed here (pbzip2 often is not).
let installedCodecs = allCodecs.filter { haveProgram($0.program) }

/// Makes files in `dir` with the real compressor; fails the test if it fails.
private func make(_ script: String, in dir: ScratchDirectory) throws {
    let r = try shell(script, directory: dir.url)
    try #require(r.status == 0, "setup failed: \(r.stderr)")
}

private func contents(_ url: URL) throws -> Data { try Data(contentsOf: url) }

/// stdout holds at most a beginning of `original`: never more, never other bytes.
private func isPrefix(_ out: Data, of original: Data) -> Bool {
    out.count <= original.count && original.prefix(out.count) == out
}

@Suite struct DecompressInteropTests {
    /// Sizes 0, 1, a few KiB and several MiB, random and compressible, and
    /// text of exactly 4 MiB, whose end meets the end of an output block
    /// (zstd once reported such a stream as truncated).
    static let inputs = """
        : > empty
        printf x > one
        head -c 3000 /dev/urandom > random-3k
        head -c 5000000 /dev/urandom > random-5m
        seq 1 1000 | head -c 3500 > text-3k
        seq 1 1200000 > text-8m
        yes 'a line of text' | head -c 4194304 > text-4mib
        """
    static let inputNames = ["empty", "one", "random-3k", "random-5m", "text-3k", "text-8m", "text-4mib"]

    @Test(arguments: installedCodecs)
    func decodesWhatTheRealProgramWrote(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make(Self.inputs + "\nfor f in \(Self.inputNames.joined(separator: " ")); do \(codec.compress) $f > $f.z; done", in: dir)
        for name in Self.inputNames {
            let original = try contents(dir.file(name))
            // lzma has no magic: it can only be named.
            for filter in codec.filter == "lzma" ? ["lzma"] : [codec.filter, "auto"] {
                for inflater in codec.inflaters {
                    let r = try run("qb-decompress", ["-f", filter, "--inflate", inflater, dir.file(name + ".z").path])
                    #expect(r.status == 0, "\(name) -f \(filter) \(inflater): \(r.stderr)")
                    #expect(r.stderr.isEmpty)
                    #expect(r.stdout == original, "\(name) -f \(filter) \(inflater): \(r.stdout.count) of \(original.count) bytes")
                }
            }
        }
    }

    @Test(arguments: installedCodecs)
    func readsStandardInputInAPipeline(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make("seq 1 300000 > text && \(codec.compress) text > text.z", in: dir)
        let r = try shell("qb-decompress -f \(codec.filter) < text.z | cmp - text && \(codec.compress) text | qb-decompress -f \(codec.filter) - | cmp - text", directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// Every tool widens the pipes it reads and writes to a megabyte, so the
    /// stages of a pipeline hand over large blocks per wake-up. The probe
    /// reads a byte first: the tool widens its pipes before writing any.
    @Test func pipesAreWidened() throws {
        let dir = try ScratchDirectory()
        try make("seq 1 1000 > text && gzip -c text > text.gz", in: dir)
        let r = try shell("""
            qb-decompress -f gzip < text.gz | python3 -c 'import fcntl, sys; sys.stdin.buffer.read(1); print(fcntl.fcntl(0, 1032))'
            """, directory: dir.url)
        let max = Int(try String(contentsOfFile: "/proc/sys/fs/pipe-max-size", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let expected = getuid() == 0 || max >= 1 << 20 ? 1 << 20 : 65536
        #expect(r.stdoutText == "\(expected)\n", "\(r.stderr)")
    }

    /// pigz and pbzip2 write several members; `cat` of two files is valid for
    /// every format but LZMA-alone, and the real programs decode all of it.
    @Test(arguments: installedCodecs.filter { $0.filter != "lzma" })
    func decodesConcatenatedMembersStreamsAndFrames(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make("""
            seq 1 200000 > a; head -c 100000 /dev/urandom > b; : > c
            \(codec.compress) a > a.z; \(codec.compress) b > b.z; \(codec.compress) c > c.z
            cat a.z b.z c.z a.z > all.z; cat a b c a > all
            """, in: dir)
        let expected = try contents(dir.file("all"))
        for filter in [codec.filter, "auto"] {
            for inflater in codec.inflaters {
                let r = try run("qb-decompress", ["-f", filter, "--inflate", inflater, dir.file("all.z").path])
                #expect(r.status == 0, "\(r.stderr)")
                #expect(r.stdout == expected)
            }
        }
    }

    @Test func xzStreamPaddingBetweenStreams() throws {
        let dir = try ScratchDirectory()
        try make("""
            seq 1 50000 > a; seq 7 90000 > b; xz -c a > a.xz; xz -c b > b.xz
            { cat a.xz; printf '\\0\\0\\0\\0'; cat b.xz; printf '\\0\\0\\0\\0\\0\\0\\0\\0'; } > padded.xz
            xz -dc padded.xz > expected
            """, in: dir)
        let r = try run("qb-decompress", ["-f", "xz", dir.file("padded.xz").path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == (try contents(dir.file("expected"))))
    }

    @Test func zstdSkippableFrames() throws {
        let dir = try ScratchDirectory()
        try make("""
            seq 1 50000 > a; zstd -q -c a > a.zst
            { printf '\\x50\\x2a\\x4d\\x18\\x03\\x00\\x00\\x00abc'; cat a.zst; printf '\\x5f\\x2a\\x4d\\x18\\x00\\x00\\x00\\x00'; } > skip.zst
            zstd -dc skip.zst > expected
            """, in: dir)
        for filter in ["zstd", "auto"] {
            let r = try run("qb-decompress", ["-f", filter, dir.file("skip.zst").path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == (try contents(dir.file("expected"))))
        }
    }
}

@Suite struct DecompressRefusalTests {
    static let original = "seq 1 60000 > orig"

    @Test(arguments: installedCodecs)
    func truncatedInputNeverSucceeds(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make(Self.original + " && \(codec.compress) orig > full", in: dir)
        let original = try contents(dir.file("orig"))
        let full = try contents(dir.file("full"))
        let cuts = Set([0, 1, 2, 3, 5, 12, full.count / 3, full.count / 2, full.count - 9, full.count - 4, full.count - 1])
        for cut in cuts.sorted() where cut >= 0 && cut < full.count {
            try full.prefix(cut).write(to: dir.file("cut"))
            for inflater in codec.inflaters {
                let r = try run("qb-decompress", ["-f", codec.filter, "--inflate", inflater, dir.file("cut").path])
                #expect(r.status == 3, "cut at \(cut) of \(full.count): status \(r.status)")
                #expect(r.stderr.hasPrefix("qb-decompress: \(dir.file("cut").path): truncated"), "cut at \(cut): \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1)
                #expect(isPrefix(r.stdout, of: original), "cut at \(cut): stdout is not a prefix of the original")
            }
        }
    }

    @Test(arguments: installedCodecs)
    func trailingGarbageIsRefused(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make(Self.original + " && { \(codec.compress) orig; echo garbage; } > dirty && { \(codec.compress) orig; printf 'x'; } > one-byte", in: dir)
        let original = try contents(dir.file("orig"))
        for name in ["dirty", "one-byte"] {
            for inflater in codec.inflaters {
                let path = dir.file(name).path
                let r = try run("qb-decompress", ["-f", codec.filter, "--inflate", inflater, path])
                #expect(r.status == 3)
                #expect(r.stderr.hasPrefix("qb-decompress: \(path): trailing garbage after \(codec.format) stream ("), "\(name): \(r.stderr)")
                #expect(isPrefix(r.stdout, of: original))
            }
        }
    }

    /// A flipped byte in the checksum or in the data is caught by the
    /// library's own check; gzip gets the CRC-32 and ISIZE fields hit exactly.
    @Test(arguments: installedCodecs)
    func corruptionIsRefused(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make(Self.original + " && \(codec.compress) orig > full", in: dir)
        let original = try contents(dir.file("orig"))
        let full = try contents(dir.file("full"))
        var offsets = [full.count / 2]
        switch codec.format {
        case "gzip": offsets += [full.count - 8, full.count - 5, full.count - 2] // CRC-32, ISIZE
        case "zstd": offsets += [full.count - 1] // content checksum
        case "xz": offsets += [full.count - 20] // index / footer CRC32
        case "bzip2": offsets += [full.count - 3] // combined stream CRC
        default: break
        }
        for offset in offsets {
            var bad = full
            bad[offset] ^= 0x5A
            try bad.write(to: dir.file("bad"))
            for inflater in codec.inflaters {
                let r = try run("qb-decompress", ["-f", codec.filter, "--inflate", inflater, dir.file("bad").path])
                #expect(r.status == 3, "flip at \(offset)/\(full.count): status \(r.status)")
                #expect(r.stderr.hasPrefix("qb-decompress: \(dir.file("bad").path): "))
                #expect(r.stderr.contains("corrupt") || r.stderr.contains("truncated"), "flip at \(offset): \(r.stderr)")
                #expect(r.stdout != original || offset != full.count / 2 || codec.format == "lzma", "flip at \(offset) went unnoticed in the output")
            }
        }
    }

    @Test(arguments: installedCodecs.filter { $0.filter != "lzma" })
    func magicMustMatchTheNamedFilter(codec: Codec) throws {
        let dir = try ScratchDirectory()
        try make(Self.original + " && \(codec.compress) orig > data", in: dir)
        for other in allCodecs where other.format != codec.format && other.format != "lzma" {
            let path = dir.file("data").path
            let r = try run("qb-decompress", ["-f", other.filter, path])
            #expect(r.status == 3)
            #expect(r.stderr == "qb-decompress: \(path): not a \(other.format) stream (magic bytes do not match filter '\(other.filter)') (the data looks like \(codec.format); qb does not guess, name the right filter)\n")
            #expect(r.stdout.isEmpty)
        }
    }

    @Test func unknownFormatUnderAutoIsUnsupported() throws {
        let dir = try ScratchDirectory()
        try make(Self.original, in: dir)
        let path = dir.file("orig").path
        let r = try run("qb-decompress", [path])
        #expect(r.status == 3)
        #expect(r.stderr == "qb-decompress: \(path): unknown compression format (no known magic bytes; name the filter, which lzma streams always need)\n")
        #expect(r.stdout.isEmpty)
    }

    @Test(arguments: ["sh -c id", "bash", "xz --fake", "lz4", "GZIP", "Xz", "gzip ", "/bin/gzip", "zstd;id", ""])
    func unknownFilterNamesAreRefused(name: String) throws {
        let dir = try ScratchDirectory()
        try make(Self.original + " && gzip -c orig > data.gz", in: dir)
        let r = try run("qb-decompress", ["-f", name, dir.file("data.gz").path])
        #expect(r.status == 3)
        #expect(r.stderr == "qb-decompress: compression filter '\(name)' is refused (Qubes Security Bulletin 51: qb never runs a program named by a backup; allowed: gzip, pigz, bzip2, pbzip2, xz, lzma, zstd, zstdmt)\n")
        #expect(r.stdout.isEmpty)
    }

    /// Fake programs named like every filter, and like refused names, each
    /// leaving a marker if run, come first on PATH: decoding still works and
    /// no marker appears, so qb ran nothing (QSB 51).
    @Test func nothingIsEverExecuted() throws {
        let dir = try ScratchDirectory()
        let names = ["gzip", "pigz", "bzip2", "pbzip2", "xz", "lzma", "zstd", "zstdmt", "lz4", "evil"]
        try make(Self.original + """

            mkdir bin markers
            for n in \(names.joined(separator: " ")); do
              printf '#!/bin/sh\\ntouch "%s/markers/$(basename "$0")"\\n' "$PWD" > bin/$n; chmod +x bin/$n
            done
            gzip -c orig > f.gzip; cp f.gzip f.pigz; bzip2 -c orig > f.bzip2; cp f.bzip2 f.pbzip2
            xz -c orig > f.xz; lzma -c orig > f.lzma; zstd -q -c orig > f.zstd; cp f.zstd f.zstdmt
            """, in: dir)
        let original = try contents(dir.file("orig"))
        let path = dir.file("bin").path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        for filter in names.prefix(8) {
            let r = try run("qb-decompress", ["-f", filter, dir.file("f.\(filter)").path], environment: ["PATH": path])
            #expect(r.status == 0, "\(filter): \(r.stderr)")
            #expect(r.stdout == original)
        }
        let marker = dir.file("markers/shell").path
        for refused in ["lz4", "evil", dir.file("bin/evil").path, "sh -c 'touch \(marker)'", "touch \(marker)"] {
            let r = try run("qb-decompress", ["-f", refused, dir.file("f.gzip").path], environment: ["PATH": path])
            #expect(r.status == 3)
            #expect(r.stderr.contains("is refused (Qubes Security Bulletin 51"))
            #expect(r.stdout.isEmpty)
        }
        // Sanity: the fakes do leave a marker when something runs them.
        try make("PATH=\(dir.file("bin").path):$PATH evil; test -e markers/evil && rm markers/evil", in: dir)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("markers").path).isEmpty)
    }
}

@Suite struct DecompressCLITests {
    @Test func helpTeaches() throws {
        let r = try run("qb-decompress", ["--help"])
        #expect(r.status == 0)
        // Compare with line wrapping undone.
        let text = r.stdoutText.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("OVERVIEW: Decompress gzip, bzip2, xz, lzma or zstd with built-in codecs, never an external program."))
        #expect(text.contains("Qubes Security Bulletin 51"))
        #expect(text.contains("set -o pipefail"))
        #expect(text.contains("| qb-decompress -f gzip |"))
        for option in ["-f, --filter <FILTER>", "--inflate <ENGINE>", "<FILE>", "gzip, pigz, bzip2, pbzip2, xz, lzma, zstd, zstdmt"] {
            #expect(text.contains(option), "help lacks \(option)")
        }
    }

    @Test func manPageDocumentsEveryOptionAndLintsClean() throws {
        let page = try String(contentsOf: Repo.root.appendingPathComponent("man/qb-decompress.1"), encoding: .utf8)
        for word in ["Fl f Ar filter", "Fl \\-filter", "Fl \\-inflate", "Qubes Security Bulletin 51",
                     "gzip", "pigz", "bzip2", "pbzip2", "xz", "lzma", "zstd", "zstdmt", "auto", ".Sh EXIT STATUS",
                     ".Sh SECURITY CONSIDERATIONS", ".Sh EXAMPLES", "set -o pipefail"] {
            #expect(page.contains(word), "man page lacks \(word)")
        }
        if haveProgram("mandoc") {
            let r = try run("mandoc", ["-Tlint", "-Wwarning", Repo.root.appendingPathComponent("man/qb-decompress.1").path])
            #expect(r.status == 0)
            #expect(r.stdoutText.isEmpty && r.stderr.isEmpty, "\(r.stdoutText)\(r.stderr)")
        }
    }

    @Test func badInflaterIsAUsageError() throws {
        let r = try run("qb-decompress", ["--inflate", "miniz", "/dev/null"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--inflate must be 'isal' or 'zlib'"))
    }

    /// `script` gives the tool a terminal as standard output.
    @Test(.enabled(if: haveProgram("script")))
    func refusesToWriteToATerminal() throws {
        let dir = try ScratchDirectory()
        try make("seq 1 1000 | gzip -c > data.gz", in: dir)
        let tool = Repo.binaries.appendingPathComponent("qb-decompress").path
        let r = try run("script", ["-qec", "'\(tool)' data.gz; echo \"status=$?\"", "/dev/null"], directory: dir.url)
        let text = r.stdoutText.replacingOccurrences(of: "\r", with: "")
        #expect(text.contains("qb-decompress: refusing to write decompressed data to a terminal (redirect standard output to a file or a pipe)\n"), "\(text)")
        #expect(text.contains("status=2"))
        #expect(!text.contains("\n1\n2\n3\n"))
    }

    @Test func missingFileIsAnIOError() throws {
        let dir = try ScratchDirectory()
        let path = dir.file("absent.gz").path
        let r = try run("qb-decompress", [path])
        #expect(r.status == 4)
        #expect(r.stderr == "qb-decompress: \(path): cannot open: No such file or directory\n")
    }

    @Test func emptyInputIsTruncated() throws {
        for filter in ["auto", "gzip", "lzma"] {
            let r = try run("qb-decompress", ["-f", filter])
            #expect(r.status == 3)
            #expect(r.stderr.hasPrefix("qb-decompress: standard input: truncated input: empty"), "\(r.stderr)")
        }
    }
}
