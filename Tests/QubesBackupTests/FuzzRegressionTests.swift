import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// Replays inputs through the fuzzers' own entry points (FuzzEntries.swift,
/// shared with FuzzTesting/): every crash the fuzzers found
/// (Tests/Fixtures/fuzz/<target>-<what>.bin), the seed corpora
/// (FuzzTesting/Seeds/), and hand-made malformed inputs — each with the
/// outcome it must have, so a refusal that changes class is noticed too.
@Suite struct FuzzRegressionTests {
    static let seeds = Repo.root.appendingPathComponent("FuzzTesting/Seeds")
    static let crashes = Repo.fixtures.appendingPathComponent("fuzz")

    static func bytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

    /// The entry point of each fuzz target, by target name.
    static let entries: [String: @Sendable ([UInt8]) -> FuzzOutcome] = [
        "FuzzHeader": FuzzEntries.header, "FuzzDigestLine": FuzzEntries.digestLine, "FuzzTar": FuzzEntries.tar,
        "FuzzTarExtract": FuzzEntries.tarExtract, "FuzzOpenSSLEnc": FuzzEntries.opensslEnc,
        "FuzzScryptFile": FuzzEntries.scryptFile, "FuzzQubesXML": FuzzEntries.qubesXML,
        "FuzzDecompress": FuzzEntries.decompress, "FuzzChunkNames": FuzzEntries.chunkNames, "FuzzRestore": FuzzEntries.restore,
        "FuzzFilesystem": FuzzEntries.filesystem,
    ]

    // MARK: - Crashes found by fuzzing

    /// `(file in Tests/Fixtures/fuzz, target, outcome after the fix)`.
    static let crashCases: [(file: String, target: String, expected: FuzzOutcome)] = [
        // ChunkName stripped both `.hmac` and `.enc`: `X.000.enc.hmac` parsed as `X.000.enc`.
        ("chunknames-double-suffix.bin", "FuzzChunkNames", .refused(.malformed)),
        // ScryptHeader computed r · p with r and p up to 2^32 − 1: Int overflow trap.
        ("scryptfile-r-times-p-overflow.bin", "FuzzScryptFile", .refused(.malformed)),
        // ISA-L accepted a gzip member whose header has a reserved flag set
        // (RFC 1952 says refuse; zlib and gzip do): the inflaters disagreed.
        ("decompress-gzip-reserved-flag.bin", "FuzzDecompress", .refused(.malformed)),
        // libzstd decoded a zstd 0.6 frame after a zstd frame when the input
        // came whole, and refused it in pieces: the two decodings disagreed.
        ("decompress-zstd-legacy-frame.bin", "FuzzDecompress", .refused(.malformed)),
        // Ext4Filesystem.inode added the inode's block to a 64-bit group
        // descriptor's inode table before checking the table's start: UInt64
        // overflow trap. (The root inode's group: refused.)
        ("filesystem-inode-table-overflow.bin", "FuzzFilesystem", .refused(.malformed)),
        // A symbolic link's inode under a second name, now a hard link to the
        // first, with no target of its own: the harness expected one.
        ("filesystem-hard-linked-symlink.bin", "FuzzFilesystem", .accepted),
    ]

    @Test func everyCrashInputHasACase() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.crashes.path).filter { $0.hasSuffix(".bin") }
        #expect(Set(files) == Set(Self.crashCases.map(\.file)))
    }

    @Test func crashInputsAreRefused() throws {
        for c in Self.crashCases {
            let outcome = Self.entries[c.target]!(try Self.bytes(Self.crashes.appendingPathComponent(c.file)))
            #expect(outcome == c.expected, "\(c.file)")
        }
    }

    @Test func chunkNameTakesOneSuffixOnly() throws {
        for name in ["vm3/private.img.000.enc.hmac", "vm3/private.img.000.hmac.enc", "qubes.xml.000.hmac.hmac", "a.000.enc.enc"] {
            let error = #expect(throws: QBError.self, "\(name)") { try ChunkName(parsing: name) }
            #expect(error?.kind == .malformed)
        }
        #expect(try ChunkName(parsing: "vm3/private.img.000.enc").suffix == .enc)
        #expect(try ChunkName(parsing: "vm3/private.img.000.hmac").description == "vm3/private.img.000.hmac")
        var sequence = ChunkSequence(layout: .envelopes)
        #expect(throws: QBError.self) { try sequence.accept("vm3/private.img.000.enc.hmac") }
    }

    /// A scrypt header with a correct checksum, as anyone can write one.
    static func scryptHeader(logN: UInt8, r: UInt32, p: UInt32) -> [UInt8] {
        var h = Array("scrypt".utf8) + [0, logN]
        for v in [r, p] { h += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
        h += [UInt8](repeating: 7, count: 32)
        h += SHA256.hash(h[0..<48]).prefix(16)
        return h + [UInt8](repeating: 0, count: 64)
    }

    @Test func scryptParametersThatOverflowAreRefusedEvenWithDefaultLimits() throws {
        // The attack path: a hostile backup-header.hmac, read before anything is authenticated.
        for (r, p) in [(UInt32.max, UInt32.max), (1 << 31, 1 << 31), (1, UInt32.max), (UInt32.max, 1), (1 << 15, 1 << 15)] {
            let envelope = Self.scryptHeader(logN: 10, r: r, p: p)
            let error = #expect(throws: QBError.self, "r \(r) p \(p)") {
                try HeaderAuthentication.verify(header: [], hmacFile: envelope, passphrase: Secret("qubes"))
            }
            #expect(error?.kind == .malformed, "r \(r) p \(p)")
        }
    }

    @Test func sha256OfTheFuzzFixupIsSHA256() {
        #expect(hexString(SHA256.hash(Array("abc".utf8)[...])) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hexString(SHA256.hash([UInt8](repeating: 0x61, count: 1000)[...]))
            == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    // MARK: - Seed corpora

    /// `target/seed` → outcome. Every committed seed must be listed.
    static let seedOutcomes: [String: FuzzOutcome] = [
        // Made with the passphrase "open sesame": parsed, then not authenticated by "qubes".
        "FuzzHeader/v2-aes-gzip": .refused(.authentication),
        "FuzzHeader/v3-aes-gzip": .accepted,
        "FuzzHeader/v3-plain-uncompressed": .refused(.authentication),
        "FuzzHeader/v3-duplicate-key": .refused(.malformed),
        "FuzzHeader/v3-qsb51-args": .refused(.unsupported),
        "FuzzHeader/v3-qsb51-shell": .refused(.unsupported),
        "FuzzHeader/v4-gzip": .accepted,
        "FuzzHeader/v4-qsb51-program": .refused(.unsupported),
        // The body is not what the lines authenticate.
        "FuzzDigestLine/v2-aes-gzip": .refused(.authentication),
        "FuzzDigestLine/v3-aes-gzip": .refused(.authentication),
        "FuzzDigestLine/v3-plain-uncompressed": .refused(.authentication),
        "FuzzDigestLine/openssl3-named": .refused(.authentication),
        "FuzzDigestLine/sha256-label": .refused(.authentication),
        "FuzzOpenSSLEnc/aes256-md5": .accepted,
        "FuzzOpenSSLEnc/aes256-sha256": .accepted,
        "FuzzOpenSSLEnc/aes128-md5": .accepted,
        "FuzzOpenSSLEnc/v3-qubes-xml-chunk": .accepted,
        "FuzzScryptFile/header-copy-logN10-r1": .accepted,
        "FuzzScryptFile/header-copy-logN10-r1-fixup": .accepted,
        // 1 MiB of scrypt memory is over the fuzzing limit of 128 KiB.
        "FuzzScryptFile/v4-header-hmac-logN10": .refused(.limitExceeded),
        "FuzzQubesXML/core2-r3": .accepted,
        "FuzzQubesXML/core3-r4": .accepted,
        "FuzzChunkNames/v3": .accepted,
        "FuzzChunkNames/v4": .accepted,
        "FuzzChunkNames/v2-from-001": .accepted,
        "FuzzRestore/v3-duplicate-key": .refused(.malformed),
        "FuzzRestore/v3-oversized-hmac": .refused(.limitExceeded),
        // Read through without a target directory: inner member names are
        // refused by the extractor only (FuzzTarExtract, the CLI tests).
        "FuzzRestore/v4-inner-absolute": .accepted,
        "FuzzRestore/v4-inner-dotdot": .accepted,
        "FuzzRestore/v4-inner-symlink": .accepted,
    ]

    /// Tar and decompressor seeds are all genuine archives and streams,
    /// filesystem seeds genuine mke2fs images…
    static let acceptedSeedDirectories = ["FuzzTar", "FuzzDecompress", "FuzzFilesystem"]
    /// …except LZMA-alone, which has no magic to be recognised by.
    static let refusedDecompressorSeeds: [String: FuzzOutcome] = ["lzma-auto-small-pieces": .refused(.unsupported)]

    @Test func seedsHaveTheirOutcomes() throws {
        let files = FileManager.default
        var seen = 0
        for target in try files.contentsOfDirectory(atPath: Self.seeds.path).sorted() {
            let dir = Self.seeds.appendingPathComponent(target)
            for seed in try files.contentsOfDirectory(atPath: dir.path).sorted() {
                let input = try Self.bytes(dir.appendingPathComponent(seed))
                let expected = Self.acceptedSeedDirectories.contains(target)
                    ? (target == "FuzzDecompress" ? Self.refusedDecompressorSeeds[seed] ?? .accepted : .accepted)
                    : Self.seedOutcomes["\(target)/\(seed)"]
                #expect(expected != nil, "\(target)/\(seed) has no expected outcome")
                #expect(Self.entries[target]!(input) == expected, "\(target)/\(seed)")
                if target == "FuzzTar" {
                    #expect(FuzzEntries.tarExtract(input) == .accepted, "FuzzTarExtract \(seed)")
                }
                seen += 1
            }
        }
        #expect(seen >= Self.seedOutcomes.count)
    }

    /// Every cut of a genuine tar seed inside its members is `.truncated`.
    @Test func truncatedSeedsAreTruncated() throws {
        let archive = try Self.bytes(Self.seeds.appendingPathComponent("FuzzTar/pax-sparse-1.0"))
        for cut in stride(from: 2 + 100, to: archive.count - 1024, by: 1000) {
            #expect(FuzzEntries.tar(Array(archive[..<cut])) == .refused(.truncated), "cut at \(cut)")
        }
        for name in ["gzip", "bzip2", "xz", "lzma", "zstd"] {
            let stream = try Self.bytes(Self.seeds.appendingPathComponent("FuzzDecompress/\(name)"))
            #expect(FuzzEntries.decompress(Array(stream.dropLast(9))) == .refused(.truncated), "\(name)")
        }
    }

    // MARK: - Hand-made malformed inputs, one failure each

    @Test func malformedHeaders() {
        let cases: [(String, FuzzOutcome)] = [
            ("version=3\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=SHA512\n", .refused(.malformed)),
            ("version=9\nencrypted=False\ncompressed=False\nhmac-algorithm=SHA512\n", .refused(.unsupported)),
            ("version=+3\n", .refused(.malformed)),
            ("version=3\nversion=3\n", .refused(.malformed)),
            ("version=3\nencrypted=False\ncompressed=True\ncompression-filter=gzip -d\nhmac-algorithm=SHA512\n", .refused(.unsupported)),
            ("version=4\nencrypted=True\ncompressed=False\nhmac-algorithm=SHA512\nbackup-id=20261122T163700-1\n", .refused(.unsupported)),
            ("version=3\nencrypted=False\ncompressed=False\nhmac-algorithm=SHA512\n", .accepted),
        ]
        for (text, expected) in cases {
            #expect(FuzzEntries.header(Array(text.utf8)) == expected, "\(text)")
        }
        #expect(FuzzEntries.header([UInt8](repeating: 0x61, count: BackupHeader.maximumSize + 1)) == .refused(.limitExceeded))
        // A header that parses but whose .hmac does not authenticate it.
        let header = Array("version=3\nencrypted=False\ncompressed=False\nhmac-algorithm=SHA512\n".utf8)
        #expect(FuzzEntries.header(header + [0] + Array(("(stdin)= " + String(repeating: "00", count: 64)).utf8)) == .refused(.authentication))
        #expect(FuzzEntries.header(header + [0] + Array("(stdin)= 0".utf8)) == .refused(.malformed))
    }

    @Test func malformedDigestLines() {
        let cases: [(String, FuzzOutcome)] = [
            ("(stdin)= ABCD", .refused(.malformed)),
            ("(stdin)= 0", .refused(.malformed)),
            ("(stdin)=", .refused(.malformed)),
            ("SHA512(stdin)= abcd\n\n", .refused(.malformed)),
            ("(stdin)= " + String(repeating: "00", count: 64) + "\n", .refused(.authentication)),
            // No digest is 3 bytes long.
            ("(stdin)= 000000", .refused(.authentication)),
        ]
        for (text, expected) in cases {
            #expect(FuzzEntries.digestLine(Array(text.utf8)) == expected, "\(text)")
        }
        #expect(FuzzEntries.digestLine([UInt8](repeating: 0x61, count: DigestLine.maximumFileSize + 1)) == .refused(.limitExceeded))
    }

    /// A ustar header block with a correct checksum.
    static func tarHeader(_ name: String, type: Character, size: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, at offset: Int) { for (i, c) in s.utf8.enumerated() { b[offset + i] = c } }
        put(name, at: 0)
        put("0000644", at: 100); put("0000000", at: 108); put("0000000", at: 116)
        put(String(repeating: "0", count: 11 - String(size, radix: 8).count) + String(size, radix: 8), at: 124)
        put("00000000000", at: 136)
        b[156] = UInt8(ascii: Unicode.Scalar(String(type))!)
        put("ustar", at: 257); put("00", at: 263)
        put("        ", at: 148)
        let sum = b.reduce(0) { $0 + Int($1) }
        put(String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8), at: 148)
        b[154] = 0
        return b
    }

    static func padded(_ data: [UInt8]) -> [UInt8] { data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512) }

    /// A member with a PAX header of `records`, `data` as its stored data, then the end of the archive.
    static func paxArchive(_ records: [String], data: [UInt8] = []) -> [UInt8] {
        let pax = Array(records.map { r in
            var length = r.utf8.count + 3
            while String(length).count + 2 + r.utf8.count != length { length += 1 }
            return "\(length) \(r)\n"
        }.joined().utf8)
        return tarHeader("PaxHeaders/f", type: "x", size: pax.count) + padded(pax)
            + tarHeader("f", type: "0", size: data.count) + padded(data) + [UInt8](repeating: 0, count: 1024)
    }

    @Test func malformedTarArchives() {
        let flags: [UInt8] = [0, 0]
        let cases: [(String, [UInt8], FuzzOutcome)] = [
            ("plain", Self.paxArchive(["path=g"], data: Array("hello".utf8)), .accepted),
            ("record length wrong",
             Self.tarHeader("x", type: "x", size: 12) + Self.padded(Array("15 path=abc\n".utf8))
                + Self.tarHeader("f", type: "0", size: 0) + [UInt8](repeating: 0, count: 1024), .refused(.malformed)),
            ("size not decimal", Self.paxArchive(["size=12a"]), .refused(.malformed)),
            ("size too long", Self.paxArchive(["size=99999999999999999999"]), .refused(.malformed)),
            ("sparse 0.1 overlapping", Self.paxArchive(["GNU.sparse.size=20", "GNU.sparse.map=0,5,3,5"], data: [UInt8](repeating: 1, count: 10)),
             .refused(.malformed)),
            ("sparse 0.1 odd map", Self.paxArchive(["GNU.sparse.size=20", "GNU.sparse.map=0,5,3"], data: [1, 2, 3, 4, 5]),
             .refused(.malformed)),
            ("sparse 0.1 beyond the end", Self.paxArchive(["GNU.sparse.size=4", "GNU.sparse.map=0,5"], data: [1, 2, 3, 4, 5]),
             .refused(.malformed)),
            ("sparse 0.1 too many entries",
             Self.paxArchive(["GNU.sparse.size=100000", "GNU.sparse.map=" + (0..<1025).map { "\($0 * 10),0" }.joined(separator: ",")]),
             .refused(.limitExceeded)),
            ("sparse 1.0 count over the limit",
             Self.paxArchive(["GNU.sparse.major=1", "GNU.sparse.minor=0", "GNU.sparse.realsize=10"], data: Self.padded(Array("2000000\n".utf8))),
             .refused(.limitExceeded)),
            ("sparse 1.0 version 2.0", Self.paxArchive(["GNU.sparse.major=2", "GNU.sparse.minor=0", "GNU.sparse.realsize=10"]),
             .refused(.unsupported)),
            ("zero block inside", Self.tarHeader("f", type: "0", size: 0) + [UInt8](repeating: 0, count: 512) + Self.tarHeader("g", type: "0", size: 0)
                + [UInt8](repeating: 0, count: 1024), .refused(.malformed)),
            ("no end", Self.tarHeader("f", type: "0", size: 0), .refused(.truncated)),
            ("data after the end", Self.tarHeader("f", type: "0", size: 0) + [UInt8](repeating: 0, count: 1024) + [1], .refused(.malformed)),
        ]
        for (what, archive, expected) in cases {
            #expect(FuzzEntries.tar(flags + archive) == expected, "\(what)")
        }
        // Names that would escape the extraction directory.
        for name in ["/etc/passwd", "../x", "a/../../x"] {
            let archive = Self.tarHeader(name, type: "0", size: 1) + Self.padded([1]) + [UInt8](repeating: 0, count: 1024)
            #expect(FuzzEntries.tarExtract(flags + archive) == .refused(.unsafe), "\(name)")
        }
    }

    @Test func malformedOpenSSLEncStreams() {
        let salted = Array("Salted__".utf8) + [1, 2, 3, 4, 5, 6, 7, 8]
        #expect(FuzzEntries.opensslEnc([0] + Array("Salted_".utf8)) == .refused(.truncated))
        #expect(FuzzEntries.opensslEnc([0]) == .refused(.truncated))
        #expect(FuzzEntries.opensslEnc([0] + Array("NotSalted_______".utf8) + [UInt8](repeating: 0, count: 16)) == .refused(.malformed))
        // Ciphertext that is not whole blocks, or whose padding is wrong.
        #expect(FuzzEntries.opensslEnc([0] + salted + [UInt8](repeating: 0, count: 15)) == .refused(.authentication))
        #expect(FuzzEntries.opensslEnc([0] + salted + [UInt8](repeating: 0, count: 32)) == .refused(.authentication))
    }

    @Test func malformedScryptEnvelopes() {
        let fix: [UInt8] = [1]
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 63, r: 8, p: 1)) == .refused(.limitExceeded))
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 20, r: 8, p: 1)) == .refused(.limitExceeded))
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 10, r: 1, p: 3)) == .refused(.limitExceeded))
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 0, r: 8, p: 1)) == .refused(.malformed))
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 64, r: 8, p: 1)) == .refused(.malformed))
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 10, r: 0, p: 1)) == .refused(.malformed))
        // Within the limits: the KDF runs, and the header MAC (zeros here) does not match.
        #expect(FuzzEntries.scryptFile(fix + Self.scryptHeader(logN: 10, r: 1, p: 1)) == .refused(.authentication))
        // Without the checksum fix-up the zeros written above are checked.
        var unsummed = Self.scryptHeader(logN: 10, r: 1, p: 1)
        unsummed[50] ^= 1
        #expect(FuzzEntries.scryptFile([0] + unsummed) == .refused(.malformed))
        var version1 = Self.scryptHeader(logN: 10, r: 1, p: 1)
        version1[6] = 1
        #expect(FuzzEntries.scryptFile(fix + version1) == .refused(.unsupported))
        #expect(FuzzEntries.scryptFile(fix + Array("scrypt".utf8)) == .refused(.truncated))
    }

    @Test func malformedQubesXML() {
        let cases: [(String, FuzzOutcome)] = [
            ("<domains/>", .refused(.unsupported)),
            ("<qubes><domains>", .refused(.truncated)),
            ("<qubes>&bogus;</qubes>", .refused(.malformed)),
            ("<qubes><domains></qubes>", .refused(.malformed)),
            ("<qubes a='1' a='2'/>", .refused(.malformed)),
            ("<qubes/><qubes/>", .refused(.malformed)),
            ("<?xml version=\"1.0\"?><qubes><domains/></qubes>", .accepted),
            ("<QubesVmCollection><QubesAppVm name='work' qid='3'/></QubesVmCollection>", .accepted),
        ]
        for (text, expected) in cases {
            #expect(FuzzEntries.qubesXML(Array(text.utf8)) == expected, "\(text)")
        }
        let deep = "<qubes>" + String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100) + "</qubes>"
        let outcome = FuzzEntries.qubesXML(Array(deep.utf8))
        #expect(outcome == .refused(.limitExceeded) || outcome == .refused(.malformed), "\(outcome)")
        #expect(FuzzEntries.qubesXML([UInt8](repeating: 0x20, count: XMLDocument.maximumSize + 1)) == .refused(.limitExceeded))
    }

    @Test func malformedCompressedStreams() throws {
        let bzip2 = Array(try Self.bytes(Self.seeds.appendingPathComponent("FuzzDecompress/bzip2")).dropFirst())
        let gzip = Array(try Self.bytes(Self.seeds.appendingPathComponent("FuzzDecompress/gzip")).dropFirst())
        #expect(FuzzEntries.decompress([0x01] + bzip2) == .refused(.malformed))   // named gzip, magic says bzip2
        #expect(FuzzEntries.decompress([0x00] + Array("hello, world".utf8)) == .refused(.unsupported))
        #expect(FuzzEntries.decompress([0x00]) == .refused(.truncated))
        var corrupt = gzip
        corrupt[corrupt.count - 6] ^= 0xFF   // CRC-32
        #expect(FuzzEntries.decompress([0x01] + corrupt) == .refused(.malformed))
        #expect(FuzzEntries.decompress([0x11] + corrupt) == .refused(.malformed))
        #expect(FuzzEntries.decompress([0x01] + gzip + [0x42]) == .refused(.malformed))
        // A small bomb: 5 MB of zeros is over the fuzzers' 4 MiB output limit.
        let bomb = try shell("head -c 5000000 /dev/zero | gzip -c")
        #expect(FuzzEntries.decompress([0xE1] + [UInt8](bomb.stdout)) == .refused(.limitExceeded))
    }

    @Test func malformedChunkSequences() {
        let cases: [(UInt8, String, FuzzOutcome)] = [
            (0, "a.000\na.000.hmac\na.001\na.001.hmac", .accepted),
            (0, "a.000\na.001", .refused(.malformed)),
            (0, "a.000", .refused(.truncated)),
            (0, "a.001\na.001.hmac", .refused(.malformed)),
            (2, "a.001\na.001.hmac", .accepted),
            (0, "a.000.hmac", .refused(.malformed)),
            (0, "a.000\na.000.hmac\nb.000\nb.000.hmac\na.001\na.001.hmac", .refused(.malformed)),
            (1, "a.000.enc\na.002.enc", .refused(.malformed)),
            (1, "a.000", .refused(.malformed)),
            (1, "../a.000.enc", .refused(.malformed)),
            (1, "/a.000.enc", .refused(.malformed)),
            (1, "a.00.enc", .refused(.malformed)),
            (1, "a.0000.enc", .refused(.malformed)),
            (1, "vm9/..000.enc", .accepted),
        ]
        for (flags, names, expected) in cases {
            #expect(FuzzEntries.chunkNames([flags] + Array(names.utf8)) == expected, "\(names)")
        }
    }

    @Test func damagedWholeBackups() throws {
        let cases: [(String, FuzzOutcome)] = [
            ("v3-flipped-byte.qubes", .refused(.authentication)),
            ("v3-truncated.qubes", .refused(.truncated)),
            ("v3-swapped-chunks.qubes", .refused(.malformed)),
            ("v3-qsb51-args.qubes", .refused(.unsupported)),
            ("v4-swapped-chunks.qubes", .refused(.malformed)),
            ("v4-missing-middle-chunk.qubes", .refused(.malformed)),
            ("v4-renamed-chunk.qubes", .refused(.authentication)),
            ("v4-gzip.qubes", .accepted),
            ("v3-aes-gzip.qubes", .accepted),
            // Made with the passphrase "open sesame".
            ("v4-xz.qubes", .refused(.authentication)),
        ]
        for (fixture, expected) in cases {
            #expect(FuzzEntries.restore(try Self.bytes(Repo.fixture(fixture))) == expected, "\(fixture)")
        }
    }
}
