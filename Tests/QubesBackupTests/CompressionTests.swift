import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

// Library tests of the allow-list and of the decoders fed in awkward pieces.
// The compressed inputs are made at test time by the real programs.

@Suite struct CompressionFilterTests {
    static let expected: [(String, CompressionFormat)] = [
        ("gzip", .gzip), ("pigz", .gzip), ("bzip2", .bzip2), ("pbzip2", .bzip2),
        ("xz", .xz), ("lzma", .lzma), ("zstd", .zstd), ("zstdmt", .zstd),
    ]

    @Test(arguments: expected)
    func acceptsEachAllowedName(name: String, format: CompressionFormat) throws {
        let filter = try CompressionFilter(headerName: name)
        #expect(filter.rawValue == name)
        #expect(filter.format == format)
    }

    @Test func theAllowListIsExactlyEightNames() {
        #expect(CompressionFilter.allCases.map(\.rawValue).sorted() == Self.expected.map(\.0).sorted())
    }

    @Test(arguments: [
        "GZIP", "Gzip", "gZip", "XZ", "Zstd", "BZIP2", // case-sensitive
        " gzip", "gzip ", "gzip\n", "gzip\0", "", "auto",
        "sh -c id", "bash", "xz --fake", "lz4", "/usr/bin/gzip", "gzip;id", "gzip -d", "$(id)", "../gzip",
        "brotli", "compress", "lzip", "lzop", "cat",
    ])
    func refusesEverythingElse(name: String) {
        do {
            _ = try CompressionFilter(headerName: name)
            Issue.record("accepted '\(name)'")
        } catch {
            #expect(error.kind == .unsupported)
            #expect(error.message.hasPrefix("compression filter '"))
            #expect(error.message.hasSuffix("' is refused"))
            #expect(error.hint?.contains("Qubes Security Bulletin 51") == true)
        }
    }

    @Test func refusalNamesTheFilterWithoutControlCharacters() {
        do {
            _ = try CompressionFilter(headerName: "xz\n--fake\u{1B}[2J")
            Issue.record("accepted")
        } catch {
            #expect(error.message == "compression filter 'xz?--fake?[2J' is refused")
        }
    }

    @Test func magicDetection() {
        func detect(_ bytes: [UInt8]) -> (CompressionFormat?, Bool) {
            bytes.withUnsafeBytes { let r = CompressionFormat.detect($0); return (r.format, r.complete) }
        }
        #expect(detect([0x1F, 0x8B, 0x08, 0]) == (.gzip, true))
        #expect(detect(Array("BZh9".utf8)) == (.bzip2, true))
        #expect(detect(Array("BZh0".utf8)) == (nil, true))
        #expect(detect([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) == (.xz, true))
        #expect(detect([0x28, 0xB5, 0x2F, 0xFD]) == (.zstd, true))
        #expect(detect([0x5E, 0x2A, 0x4D, 0x18]) == (.zstd, true)) // skippable frame
        #expect(detect([0x28, 0x2A, 0x4D, 0x18]) == (nil, true))   // a mix of both zstd magics
        #expect(detect([0x1F]) == (nil, false))
        #expect(detect([]) == (nil, false))
        #expect(detect(Array("ustar".utf8)) == (nil, true))
    }
}

/// Writes `bytes` to `sink` in pieces of the given sizes (cycled), then finishes it.
func feed(_ bytes: [UInt8], to sink: ByteSink, pieces: [Int]) throws(QBError) {
    var offset = 0, i = 0
    while offset < bytes.count {
        let n = Swift.min(pieces[i % pieces.count], bytes.count - offset)
        try bytes.withBytes { (raw) throws(QBError) in
            try sink.write(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)])))
        }
        offset += n
        i += 1
    }
    try sink.finish()
}

/// Keeps what is written, and the size of the largest single write.
final class WriteSizeRecorder: ByteSink {
    private(set) var bytes: [UInt8] = []
    private(set) var largestWrite = 0
    private(set) var finished = false

    func write(_ span: RawSpan) throws(QBError) {
        largestWrite = Swift.max(largestWrite, span.byteCount)
        span.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }

    func finish() throws(QBError) { finished = true }
}

/// CRC-32 (RFC 1952 §8), bit by bit: only for building test headers.
private func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

/// Compresses with a real program.
private func compress(_ data: [UInt8], _ command: [String]) throws -> [UInt8] {
    let r = try run(command[0], Array(command.dropFirst()), stdin: Data(data))
    precondition(r.status == 0, "\(command) failed: \(r.stderr)")
    return Array(r.stdout)
}

/// Compressible but not trivial: numbered lines with some noise.
private func sampleData(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = seed
    var out: [UInt8] = []
    out.reserveCapacity(count + 64)
    var line = 0
    while out.count < count {
        generator = generator &* 6364136223846793005 &+ 1442695040888963407
        out.append(contentsOf: Array("line \(line) value \(generator >> 50)\n".utf8))
        line += 1
    }
    return Array(out.prefix(count))
}

@Suite struct DecompressorTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var filter: CompressionFilter
        var command: [String]
        var inflater: Inflater = .isal
        var testDescription: String { "\(filter.rawValue) \(inflater.rawValue)" }
    }

    static let cases: [Case] = [
        Case(filter: .gzip, command: ["gzip", "-c"]),
        Case(filter: .gzip, command: ["gzip", "-c"], inflater: .zlib),
        Case(filter: .bzip2, command: ["bzip2", "-c"]),
        Case(filter: .xz, command: ["xz", "-c"]),
        Case(filter: .lzma, command: ["lzma", "-c"]),
        Case(filter: .zstd, command: ["zstd", "-q", "-c"]),
    ]

    /// Piece sizes that split magics, headers, member boundaries and trailers
    /// at every kind of place.
    static let piecings: [[Int]] = [[1], [1, 2, 3, 5, 7], [4093], [1 << 20]]

    @Test(arguments: cases)
    func concatenatedStreamsInAnyPieces(c: Case) throws {
        let a = sampleData(70_000, seed: 1), b = sampleData(5_000, seed: 2)
        let ca = try compress(a, c.command), cb = try compress(b, c.command)
        // LZMA-alone cannot be concatenated; every other format decodes all members.
        let (input, expected) = c.filter == .lzma ? (ca, a) : (ca + cb, a + b)
        var options = DecompressionOptions()
        options.inflater = c.inflater
        for pieces in Self.piecings {
            for filter in [c.filter, nil] where !(filter == nil && c.filter == .lzma) {
                let sink = MemorySink()
                try feed(input, to: makeDecompressor(filter, downstream: sink, options: options), pieces: pieces)
                #expect(sink.bytes == expected, "pieces \(pieces) filter \(filter?.rawValue ?? "auto")")
                #expect(sink.finished)
            }
        }
    }

    /// The decoders' output block is the only thing `blockSize` changes:
    /// the same bytes, never more than a block per downstream write, and
    /// block boundaries at every place a library call can stop.
    @Test(arguments: cases)
    func smallOutputBlocksGiveTheSameBytes(c: Case) throws {
        // Two members (LZMA-alone has one), so a block boundary also meets a member's end.
        let a = sampleData(30_000, seed: 6), b = sampleData(2_000, seed: 7)
        let (input, data) = c.filter == .lzma ? (try compress(a, c.command), a)
            : (try compress(a, c.command) + compress(b, c.command), a + b)
        for blockSize in [1, 17, 4095] {
            var options = DecompressionOptions()
            options.inflater = c.inflater
            options.blockSize = blockSize
            let sink = WriteSizeRecorder()
            try feed(input, to: makeDecompressor(c.filter, downstream: sink, options: options), pieces: [1 << 20])
            #expect(sink.bytes == data, "block size \(blockSize)")
            #expect(sink.largestWrite <= blockSize, "block size \(blockSize): a write of \(sink.largestWrite)")
            #expect(sink.finished)
        }
    }

    /// Output that ends exactly on a block boundary, at the default 1 MiB
    /// block: libzstd's last call then reads the frame's checksum and fills
    /// the block at once, and the call after it, which finds nothing more,
    /// once made a whole stream look truncated.
    @Test(arguments: cases)
    func outputEndingOnABlockBoundary(c: Case) throws {
        let data = sampleData(2 * IOBuffer.defaultCapacity, seed: 8)
        let input = try compress(data, c.command)
        var options = DecompressionOptions()
        options.inflater = c.inflater
        let sink = MemorySink()
        try feed(input, to: makeDecompressor(c.filter, downstream: sink, options: options), pieces: [1 << 20])
        #expect(sink.bytes == data)
        #expect(sink.finished)
    }

    /// RFC 1952 §2.3.1.2: a reserved FLG bit set is an error. gzip and
    /// zlib refuse it; ISA-L does not check, so qb does (fuzzing the two
    /// inflaters against each other found it).
    @Test(arguments: [Inflater.isal, .zlib], [UInt8(0x20), 0x40, 0x80])
    func reservedHeaderFlagsAreRefused(inflater: Inflater, flag: UInt8) throws {
        let whole = try compress(sampleData(1_000, seed: 9), ["gzip", "-c", "-n"])
        for member in [0, 1] {
            // In the first member, or in the second of two.
            var stream = member == 0 ? whole : whole + whole
            stream[member * whole.count + 3] |= flag
            #expect(try run("gzip", ["-t"], stdin: Data(stream)).status != 0)
            var options = DecompressionOptions()
            options.inflater = inflater
            for pieces in [[1 << 20], [1], [whole.count + 2, 5]] {
                let error = #expect(throws: QBError.self, "member \(member) pieces \(pieces)") {
                    try feed(stream, to: makeDecompressor(.gzip, downstream: MemorySink(), options: options), pieces: pieces)
                }
                #expect(error?.kind == .malformed)
                #expect(error?.message.contains("header flags") == true, "\(error?.message ?? "")")
            }
        }
    }

    /// A frame of zstd 0.6 (magic FD2FB526) after a zstd frame: libzstd
    /// decodes it when the whole magic is in one call, refuses it otherwise;
    /// qb refuses it in any pieces, as the trailing garbage it is here.
    @Test func legacyZstdFramesAreRefusedInAnyPieces() throws {
        let data = sampleData(3_000, seed: 10)
        let legacy: [UInt8] = [0x26, 0xB5, 0x2F, 0xFD, 0x1B, 0xFF, 0xFF, 0xE7]
        let stream = try compress(data, ["zstd", "-q", "-c"]) + legacy
        for pieces in [[1 << 20], [1], [13], [stream.count - 8, 2]] {
            let sink = MemorySink()
            let error = #expect(throws: QBError.self, "pieces \(pieces)") {
                try feed(stream, to: makeDecompressor(.zstd, downstream: sink, options: DecompressionOptions()), pieces: pieces)
            }
            #expect(error?.kind == .malformed)
            #expect(error?.message == "trailing garbage after zstd stream", "\(error?.message ?? "")")
            #expect(!sink.finished)
        }
    }

    @Test(arguments: cases)
    func truncationIsNeverSuccess(c: Case) throws {
        // Two members (one for LZMA-alone), so cuts land in the first, the
        // second, and between them.
        let a = sampleData(40_000, seed: 3), b = sampleData(3_000, seed: 13)
        let single = c.filter == .lzma
        let data = single ? a : a + b
        let full = try compress(a, c.command) + (single ? [] : compress(b, c.command))
        var options = DecompressionOptions()
        options.inflater = c.inflater
        var cuts = Set([0, 1, 2, 3, 5, 6, 13, full.count / 2, full.count - 8, full.count - 4, full.count - 1])
        for cut in stride(from: 0, to: full.count, by: 997) { cuts.insert(cut) }
        for cut in cuts.sorted() where cut < full.count {
            for pieces in [[1 << 20], [3]] {
                let sink = MemorySink()
                #expect(throws: QBError.self, "cut at \(cut)") {
                    try feed(Array(full.prefix(cut)), to: makeDecompressor(c.filter, downstream: sink, options: options), pieces: pieces)
                }
                #expect(!sink.finished)
                #expect(sink.bytes.count <= data.count && Array(data.prefix(sink.bytes.count)) == sink.bytes)
            }
        }
    }

    @Test(arguments: cases)
    func truncationIsReportedAsTruncated(c: Case) throws {
        let full = try compress(sampleData(40_000, seed: 4), c.command)
        var options = DecompressionOptions()
        options.inflater = c.inflater
        for cut in [full.count / 2, full.count - 1] {
            do {
                try feed(Array(full.prefix(cut)), to: makeDecompressor(c.filter, downstream: MemorySink(), options: options), pieces: [1 << 20])
                Issue.record("cut at \(cut) accepted")
            } catch {
                #expect(error.kind == .truncated, "cut at \(cut): \(error)")
            }
        }
    }

    @Test(arguments: cases)
    func trailingGarbageIsMalformed(c: Case) throws {
        let data = sampleData(20_000, seed: 5)
        let full = try compress(data, c.command)
        var options = DecompressionOptions()
        options.inflater = c.inflater
        for garbage: [UInt8] in [[0], Array("garbage".utf8), [0x1F, 0x8C], Array(repeating: 0xFF, count: 100)] {
            for pieces in [[1 << 20], [1]] {
                let sink = MemorySink()
                do {
                    try feed(full + garbage, to: makeDecompressor(c.filter, downstream: sink, options: options), pieces: pieces)
                    Issue.record("garbage \(garbage.prefix(4)) accepted")
                } catch {
                    #expect(error.kind == .malformed)
                    #expect(error.message.contains("trailing garbage") || error.message.contains("corrupt"), "\(error)")
                }
                #expect(!sink.finished)
            }
        }
    }

    /// gzip's optional header fields (RFC 1952 §2.3.1), which gzip itself
    /// rarely writes: extra field, name, comment, header CRC — in one-byte
    /// pieces so both inflaters parse them across writes.
    @Test(arguments: Inflater.allCases)
    func gzipOptionalHeaderFields(inflater: Inflater) throws {
        let data = sampleData(30_000, seed: 14)
        let plain = try compress(data, ["gzip", "-n", "-c"])
        #expect(plain[3] == 0) // no flags: the deflate data starts at byte 10
        let body = Array(plain[10...])
        // XLEN 511 (0x01FF): both length bytes matter; NULs in the extra field
        // must not be taken for the end of the name.
        var header: [UInt8] = [0x1F, 0x8B, 0x08, 0x04 | 0x08 | 0x10 | 0x02, 1, 2, 3, 4, 0, 3, 0xFF, 0x01]
        header += (0..<511).map { UInt8($0 & 1) } + Array("name.tar\0".utf8) + Array("a comment\0".utf8)
        let crc = crc32(header)
        var options = DecompressionOptions()
        options.inflater = inflater
        let good = header + [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF)] + body
        for pieces in [[1], [1 << 20]] {
            let sink = MemorySink()
            try feed(good + good, to: makeDecompressor(.gzip, downstream: sink, options: options), pieces: pieces)
            #expect(sink.bytes == data + data)
        }
        let badHeaderCRC = header + [UInt8(crc & 0xFF) ^ 1, UInt8(crc >> 8 & 0xFF)] + body
        #expect(throws: QBError.self) {
            try feed(badHeaderCRC, to: makeDecompressor(.gzip, downstream: MemorySink(), options: options), pieces: [1 << 20])
        }
    }

    /// Every single-bit flip, at every position of a small stream, is either
    /// refused or harmless (fields no check covers, such as gzip's MTIME) —
    /// never silently different output. LZMA-alone has no check to rely on.
    @Test(arguments: cases.filter { $0.filter != .lzma })
    func everyBitFlipIsCaughtOrHarmless(c: Case) throws {
        let data = sampleData(3_000, seed: 16)
        let full = try compress(data, c.command)
        var options = DecompressionOptions()
        options.inflater = c.inflater
        var refused = 0
        for position in full.indices {
            for bit in [0x01, 0x10, 0x80] as [UInt8] {
                var bad = full
                bad[position] ^= bit
                let sink = MemorySink()
                do {
                    try feed(bad, to: makeDecompressor(c.filter, downstream: sink, options: options), pieces: [1 << 20])
                    #expect(sink.bytes == data, "flip \(bit) at \(position) of \(full.count) changed the output silently")
                } catch {
                    refused += 1
                }
            }
        }
        #expect(refused > full.count * 2) // most flips must be caught
    }

    @Test(arguments: cases)
    func outputLimitIsEnforced(c: Case) throws {
        let data = sampleData(50_000, seed: 15)
        let full = try compress(data, c.command)
        var options = DecompressionOptions()
        options.inflater = c.inflater
        options.outputLimit = UInt64(data.count)
        let exact = MemorySink()
        try feed(full, to: makeDecompressor(c.filter, downstream: exact, options: options), pieces: [1 << 20])
        #expect(exact.bytes == data)
        options.outputLimit = UInt64(data.count - 1)
        let short = MemorySink()
        do {
            try feed(full, to: makeDecompressor(c.filter, downstream: short, options: options), pieces: [1 << 20])
            Issue.record("more output than the limit accepted")
        } catch {
            #expect(error.kind == .limitExceeded)
        }
        #expect(short.bytes.count < data.count)
    }

    @Test func xzStreamPaddingIsAcceptedOnlyInFours() throws {
        let a = sampleData(9_000, seed: 6), b = sampleData(3_000, seed: 7)
        let ca = try compress(a, ["xz", "-c"]), cb = try compress(b, ["xz", "-c"])
        let sink = MemorySink()
        try feed(ca + [0, 0, 0, 0] + cb + [0, 0, 0, 0, 0, 0, 0, 0], to: makeDecompressor(.xz, downstream: sink), pieces: [1, 1 << 20])
        #expect(sink.bytes == a + b)
        for bad in [ca + [0, 0, 0], ca + [0, 0] + cb] {
            #expect(throws: QBError.self) { try feed(bad, to: makeDecompressor(.xz, downstream: MemorySink()), pieces: [1 << 20]) }
        }
        // Padding may follow a stream, never precede the first one.
        #expect(throws: QBError.self) { try feed([0, 0, 0, 0] + ca, to: makeDecompressor(.xz, downstream: MemorySink()), pieces: [1 << 20]) }
    }

    @Test func zstdSkippableFramesAreSkipped() throws {
        let a = sampleData(9_000, seed: 8), b = sampleData(100, seed: 9)
        let skippable: [UInt8] = [0x53, 0x2A, 0x4D, 0x18, 5, 0, 0, 0] + Array("hello".utf8)
        let input = try skippable + compress(a, ["zstd", "-q", "-c"]) + skippable + compress(b, ["zstd", "-q", "-c"])
        for filter in [CompressionFilter.zstd, .zstdmt, nil] {
            let sink = MemorySink()
            try feed(input, to: makeDecompressor(filter, downstream: sink), pieces: [1, 2, 1 << 20])
            #expect(sink.bytes == a + b)
        }
    }

    @Test func magicMustMatchTheNamedFilter() throws {
        let gz = try compress(sampleData(1_000, seed: 10), ["gzip", "-c"])
        for filter in [CompressionFilter.bzip2, .xz, .zstd, .zstdmt, .pbzip2] {
            let sink = MemorySink()
            do {
                try feed(gz, to: makeDecompressor(filter, downstream: sink), pieces: [1 << 20])
                Issue.record("\(filter) accepted gzip data")
            } catch {
                #expect(error.kind == .malformed)
                #expect(error.message == "not a \(filter.format.rawValue) stream (magic bytes do not match filter '\(filter.rawValue)')")
                #expect(error.hint?.contains("looks like gzip") == true)
            }
            #expect(sink.bytes.isEmpty)
        }
    }

    @Test func unknownDataUnderAutoIsUnsupported() {
        do {
            try feed(Array("ustar plain data".utf8), to: makeDecompressor(nil, downstream: MemorySink()), pieces: [1 << 20])
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .unsupported)
            #expect(error.hint?.contains("name the filter") == true)
        }
    }

    @Test func zstdWindowIsBounded() throws {
        // --long=28 writes a frame whose window exceeds the default 2^27 bound.
        let data = sampleData(1_000, seed: 11)
        let big = try compress(data, ["zstd", "-q", "-c", "--long=28", "--no-content-size"])
        var options = DecompressionOptions()
        options.zstdWindowLogMax = 20
        do {
            try feed(big, to: makeDecompressor(.zstd, downstream: MemorySink(), options: options), pieces: [1 << 20])
            Issue.record("accepted a 2^28 window under a 2^20 bound")
        } catch {
            #expect(error.kind == .limitExceeded)
        }
    }

    @Test func xzMemoryIsBounded() throws {
        let big = try compress(sampleData(1_000, seed: 12), ["xz", "-c", "-9"])
        var options = DecompressionOptions()
        options.lzmaMemoryLimit = 1 << 20
        for (filter, input) in [(CompressionFilter.xz, big), (.lzma, try compress(sampleData(1_000, seed: 12), ["lzma", "-c", "-9"]))] {
            do {
                try feed(input, to: makeDecompressor(filter, downstream: MemorySink(), options: options), pieces: [1 << 20])
                Issue.record("\(filter) accepted a 64 MiB dictionary under a 1 MiB limit")
            } catch {
                #expect(error.kind == .limitExceeded)
            }
        }
    }
}

/// The decoders' bounds at their default value and just over.
@Suite struct DecoderLimitTests {
    /// gzip's name field makes a header as long as one likes; while it
    /// arrives in pieces it is kept whole, up to 1 MiB (checked between
    /// writes, so "over" is by one write; re-read from its start at each
    /// write, it is fed in 64 KiB pieces as a pipe delivers it).
    @Test func gzipHeaderUpTo1MiB() throws {
        let data = sampleData(10_000, seed: 21)
        let plain = try compress(data, ["gzip", "-c", "-n"])
        func named(headerLength: Int) -> [UInt8] {
            var h = Array(plain[0..<10])
            h[3] |= 0x08  // FNAME
            return h + [UInt8](repeating: 0x61, count: headerLength - 11) + [0] + plain[10...]
        }
        let sink = MemorySink()
        try feed(named(headerLength: 1 << 20), to: makeDecompressor(.gzip, downstream: sink), pieces: [65_536])
        #expect(sink.bytes == data)
        let over = named(headerLength: (1 << 20) + 65_537)
        do throws(QBError) {
            try feed(over, to: makeDecompressor(.gzip, downstream: MemorySink()), pieces: [65_536])
            Issue.record("a gzip header over 1 MiB was accepted")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.message == "gzip header longer than 1 MiB")
        }
    }

    /// `xz -9`, the largest preset (64 MiB dictionary), decodes under the
    /// default 256 MiB; xzMemoryIsBounded shows a smaller bound refusing it.
    @Test func xzNineUnderTheDefault() throws {
        #expect(DecompressionOptions().lzmaMemoryLimit == 256 << 20)
        let data = sampleData(5_000, seed: 22)
        for (filter, command) in [(CompressionFilter.xz, ["xz", "-c", "-9"]), (.lzma, ["lzma", "-c", "-9"])] {
            let sink = MemorySink()
            try feed(try compress(data, command), to: makeDecompressor(filter, downstream: sink), pieces: [1 << 20])
            #expect(sink.bytes == data, "\(filter)")
        }
    }

    /// zstd windows: 2^27 accepted by default, 2^28 refused.
    @Test func zstdWindowUpTo2To27() throws {
        #expect(DecompressionOptions().zstdWindowLogMax == 27)
        let data = sampleData(1_000, seed: 23)
        let sink = MemorySink()
        try feed(try compress(data, ["zstd", "-q", "-c", "--long=27", "--no-content-size"]), to: makeDecompressor(.zstd, downstream: sink),
                 pieces: [1 << 20])
        #expect(sink.bytes == data)
        let wider = try compress(data, ["zstd", "-q", "-c", "--long=28", "--no-content-size"])
        do throws(QBError) {
            try feed(wider, to: makeDecompressor(.zstd, downstream: MemorySink()), pieces: [1 << 20])
            Issue.record("a 2^28 window was accepted")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.message == "zstd frame needs a window larger than 2^27 bytes")
        }
    }
}
