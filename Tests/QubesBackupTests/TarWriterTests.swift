import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

#if canImport(Glibc)
import Glibc
#endif

/// One member to write and what to expect back.
private struct Planned {
    var entry: TarEntry
    /// Logical content (holes as zeros) for regular files.
    var content: [UInt8] = []
    /// Fragments to emit, as (offset, length) into `content`; nil means one
    /// fragment of the whole content.
    var fragments: [(Int64, Int)]? = nil
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private let mtime: Int64 = 1_700_000_000

private func entry(_ path: [UInt8], _ kind: TarEntryKind, mode: UInt32 = 0o644, size: Int64 = 0) -> TarEntry {
    TarEntry(path: path, kind: kind, mode: mode, uid: 1000, gid: 1000, userName: "user", groupName: "group",
             modificationTime: mtime, size: size)
}

/// A deterministic, non-repeating-ish pattern so misplaced bytes show.
private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 9)) }
}

// Names used below.
private let longSplittable = bytes("dir/" + String(repeating: "a", count: 60) + "/" + String(repeating: "b", count: 85))  // 150 bytes
private let longUnsplittable = bytes("dir/" + String(repeating: "c", count: 146))  // 150 bytes, one 146-byte component
private let longTarget = bytes(String(repeating: "target/", count: 42) + "end.txt")  // 301 bytes
private let shortNonUTF8: [UInt8] = bytes("dir/caf") + [0xE9]
private let longNonUTF8: [UInt8] = bytes("dir/") + [UInt8](repeating: 0xFF, count: 120)
private let sparseSize: Int64 = 4 << 20

private func plannedMembers() throws -> [Planned] {
    var members: [Planned] = []
    members.append(Planned(entry: entry(bytes("dir"), .directory, mode: 0o700)))

    var regular = entry(bytes("dir/regular.txt"), .regular, size: 13)
    regular.modificationNanoseconds = 123_456_789
    members.append(Planned(entry: regular, content: bytes("hello, world\n")))

    members.append(Planned(entry: entry(bytes("dir/empty"), .regular)))

    // Bigger than the writer's buffer, in fragments both smaller and larger
    // than it, so the direct-write path and buffer boundaries are crossed.
    let big = pattern(3 << 20 | 123, seed: 7)
    members.append(Planned(entry: entry(bytes("dir/big"), .regular, size: Int64(big.count)), content: big,
                           fragments: [(0, 1000), (1000, (5 << 19) - 1000), (5 << 19, big.count - (5 << 19))]))

    // Data at 0..<4096 and 1 MiB..<1 MiB+8192, ending in a 3 MiB hole.
    let map = try SparseMap(entries: [SparseRegion(offset: 0, length: 4096), SparseRegion(offset: 1 << 20, length: 8192)],
                            realSize: sparseSize, storedSize: 4096 + 8192)
    var sparseContent = [UInt8](repeating: 0, count: Int(sparseSize))
    sparseContent.replaceSubrange(0..<4096, with: pattern(4096, seed: 1))
    sparseContent.replaceSubrange((1 << 20)..<((1 << 20) + 8192), with: pattern(8192, seed: 2))
    var sparse = entry(bytes("dir/sparse"), .regular, size: sparseSize)
    sparse.sparseMap = map
    members.append(Planned(entry: sparse, content: sparseContent,
                           fragments: [(0, 4096), (1 << 20, 5000), ((1 << 20) + 5000, 3192)]))

    members.append(Planned(entry: entry(longSplittable, .regular, size: 5), content: bytes("long\n")))
    members.append(Planned(entry: entry(longUnsplittable, .regular, size: 6), content: bytes("long2\n")))

    var link = entry(bytes("dir/link"), .symbolicLink, mode: 0o777)
    link.linkTarget = longTarget
    members.append(Planned(entry: link))

    members.append(Planned(entry: entry(shortNonUTF8, .regular, size: 4), content: bytes("caf\n")))
    members.append(Planned(entry: entry(longNonUTF8, .regular, size: 3), content: bytes("ff\n")))

    var bigID = entry(bytes("dir/bigid"), .regular, size: 3)
    bigID.uid = 3_000_000
    bigID.gid = 3_000_001
    members.append(Planned(entry: bigID, content: bytes("id\n")))

    var hard = entry(bytes("dir/hardlink"), .hardLink)
    hard.linkTarget = bytes("dir/regular.txt")
    members.append(Planned(entry: hard))

    members.append(Planned(entry: entry(bytes("dir/fifo"), .fifo, mode: 0o640)))
    return members
}

/// Writes the members with `TarWriter` into `file` through a FileDescriptor.
private func writeArchive(_ members: [Planned], to file: URL) throws {
    let fd = open(file.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    #expect(fd >= 0)
    let sink = FileDescriptor(rawValue: fd, name: file.path, owned: true)
    let writer = TarWriter(sink: sink)
    for m in members {
        try writer.append(m.entry) { (emit: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) in
            let fragments = m.fragments ?? (m.content.isEmpty ? [] : [(Int64(0), m.content.count)])
            for (offset, count) in fragments {
                let start = Int(offset)
                try emit(offset, m.content[start..<(start + count)].span.bytes)
            }
        }
    }
    try writer.finish()
}


/// A shell-quoted path built with printf so non-UTF-8 bytes survive.
private func printfPath(_ path: [UInt8]) -> String {
    "\"$(printf '" + path.map { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2F || b == 0x2E || b == 0x5F
            ? String(UnicodeScalar(b)) : "\\" + String(b, radix: 8)
    }.joined() + "')\""
}

@Suite struct TarWriterTests {
    @Test func gnuTarListsAndExtractsEverything() throws {
        try #require(haveProgram("tar"))
        let scratch = try ScratchDirectory()
        let archive = scratch.file("out.tar")
        let members = try plannedMembers()
        try writeArchive(members, to: archive)

        // Listing: clean exit, no warnings, and the attributes GNU tar sees.
        let list = try run("tar", ["--numeric-owner", "-tvf", archive.path])
        #expect(list.status == 0)
        #expect(list.stderr.isEmpty, "\(list.stderr)")
        let lines = list.stdoutText.split(separator: "\n").map(String.init)
        #expect(lines.count == members.count)
        func line(_ suffix: String) -> String? { lines.first { $0.hasSuffix(suffix) } }
        // Mode, owner and size columns (GNU tar pads them for alignment).
        func columns(_ suffix: String) -> [String] {
            (line(suffix) ?? "").split(separator: " ").prefix(3).map(String.init)
        }
        #expect(line(" dir")?.hasPrefix("drwx------ 1000/1000 ") == true, "\(lines)")
        #expect(columns(" dir/regular.txt") == ["-rw-r--r--", "1000/1000", "13"])
        #expect(columns(" dir/empty") == ["-rw-r--r--", "1000/1000", "0"])
        #expect(line(" dir/big")?.contains(" \(3 << 20 | 123) ") == true)
        #expect(columns(" dir/sparse") == ["-rw-r--r--", "1000/1000", "\(sparseSize)"])
        #expect(line(" " + String(decoding: longSplittable, as: UTF8.self)) != nil)
        #expect(line(" " + String(decoding: longUnsplittable, as: UTF8.self)) != nil)
        #expect(line(" dir/link -> " + String(decoding: longTarget, as: UTF8.self))?.hasPrefix("lrwxrwxrwx ") == true)
        #expect(columns(" dir/bigid") == ["-rw-r--r--", "3000000/3000001", "3"])
        #expect(line(" dir/hardlink link to dir/regular.txt")?.hasPrefix("hrw-r--r-- ") == true)
        #expect(line(" dir/fifo")?.hasPrefix("prw-r----- ") == true)
        #expect(line(" dir/caf\\351") != nil, "\(lines)")

        // Extraction.
        let out = scratch.file("x")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let x = try run("tar", ["-xf", archive.path, "-C", out.path])
        #expect(x.status == 0)
        #expect(x.stderr.isEmpty, "\(x.stderr)")
        for m in members where m.entry.kind == .regular {
            let got = try shell("cat \(printfPath(m.entry.path))", directory: out)
            #expect(got.status == 0, "\(m.entry.name): \(got.stderr)")
            #expect([UInt8](got.stdout) == m.content, "content of \(m.entry.name)")
        }
        let stats = try shell("""
            stat -c '%n %F %a %h %s' dir dir/fifo dir/hardlink dir/regular.txt dir/sparse
            stat -c %b dir/sparse dir/big
            stat -c %y dir/regular.txt
            readlink dir/link
            """, directory: out)
        #expect(stats.status == 0, "\(stats.stderr)")
        let s = stats.stdoutText.split(separator: "\n").map(String.init)
        try #require(s.count == 9, "\(s)")
        #expect(s[0] == "dir directory 700 3 \(s[0].split(separator: " ").last!)")  // links: ., dir/, dir/aaa…
        #expect(s[1] == "dir/fifo fifo 640 1 0")
        #expect(s[2] == "dir/hardlink regular file 644 2 13")
        #expect(s[3] == "dir/regular.txt regular file 644 2 13")
        #expect(s[4] == "dir/sparse regular file 644 1 \(sparseSize)")
        // Holes recreated: far fewer 512-byte blocks than the 8192 a dense
        // copy of 4 MiB takes (the dense 3 MiB file shows the filesystem
        // does allocate what is written).
        let sparseBlocks = Int(s[5]) ?? -1, bigBlocks = Int(s[6]) ?? -1
        #expect(sparseBlocks >= 0 && sparseBlocks < 1024, "sparse file uses \(sparseBlocks) blocks")
        #expect(bigBlocks >= 6144)
        #expect(s[7].contains(".123456789 "), "\(s[7])")
        #expect(s[8] == String(decoding: longTarget, as: UTF8.self))
        if getuid() == 0 {
            let owner = try shell("stat -c '%u %g' dir/bigid", directory: out)
            #expect(owner.stdoutText == "3000000 3000001\n")
        }
    }

    @Test func ourReaderReadsItBack() throws {
        let scratch = try ScratchDirectory()
        let archive = scratch.file("out.tar")
        let members = try plannedMembers()
        try writeArchive(members, to: archive)
        let data = [UInt8](try Data(contentsOf: archive))
        #expect(data.count % 512 == 0)
        let read = try readAllMembers(data)
        try #require(read.count == members.count)
        for (m, (e, content)) in zip(members, read) {
            let w = m.entry
            #expect(e.path == w.path, "\(e.name) vs \(w.name)")
            #expect(e.kind == w.kind)
            #expect(e.linkTarget == w.linkTarget)
            #expect(e.mode == w.mode)
            #expect(e.uid == w.uid && e.gid == w.gid)
            #expect(e.userName == w.userName && e.groupName == w.groupName)
            #expect(e.modificationTime == w.modificationTime)
            #expect(e.modificationNanoseconds == w.modificationNanoseconds)
            #expect(e.size == (w.kind == .regular ? w.size : 0))
            #expect(e.sparseMap == w.sparseMap)
            #expect(content == m.content, "content of \(w.name)")
        }
        // Plain ustar unless a field needed PAX.
        #expect(read.first { $0.0.name == "dir/empty" }?.0.format == .ustar)
        #expect(read.first { $0.0.path == longSplittable }?.0.format == .ustar)
        #expect(read.first { $0.0.path == shortNonUTF8 }?.0.format == .ustar)
        #expect(read.first { $0.0.path == longUnsplittable }?.0.format == .pax)
        // The long non-UTF-8 name is stored raw in PAX, as GNU tar does.
        #expect(!data.contains(bytes("hdrcharset")))
        #expect(data.contains(bytes("134 path=") + longNonUTF8 + [0x0A]))
    }

    @Test func devicesAreHeadersOnly() throws {
        let sink = MemorySink()
        let writer = TarWriter(sink: sink)
        var char = entry(bytes("null"), .characterDevice, mode: 0o666)
        char.deviceMajor = 1; char.deviceMinor = 3
        var block = entry(bytes("sda"), .blockDevice, mode: 0o660)
        block.deviceMajor = 8; block.deviceMinor = 1_048_575
        block.size = 4096  // ignored for non-regular members
        try writer.append(char)
        try writer.append(block)
        try writer.finish()
        #expect(sink.finished)
        #expect(sink.bytes.count == 4 * 512)
        let read = try readAllMembers(sink.bytes)
        try #require(read.count == 2)
        #expect(read[0].0.kind == .characterDevice && read[0].0.deviceMajor == 1 && read[0].0.deviceMinor == 3)
        #expect(read[1].0.kind == .blockDevice && read[1].0.deviceMajor == 8 && read[1].0.deviceMinor == 1_048_575)
        #expect(read[1].0.size == 0)
        if haveProgram("tar") {
            let scratch = try ScratchDirectory()
            try Data(sink.bytes).write(to: scratch.file("d.tar"))
            let list = try run("tar", ["-tvf", scratch.file("d.tar").path])
            #expect(list.status == 0 && list.stderr.isEmpty)
            #expect(list.stdoutText.contains("crw-rw-rw-") && list.stdoutText.contains(" 1,3 "))
            #expect(list.stdoutText.contains("brw-rw----") && list.stdoutText.contains(" 8,1048575 "))
        }
    }

    @Test func bigSizeAndNegativeTimeGoToPAX() throws {
        let sink = MemorySink()
        let writer = TarWriter(sink: sink)
        var e = entry(bytes("old"), .regular, size: 2)
        e.modificationTime = -5
        e.modificationNanoseconds = 300_000_000
        e.userName = String(repeating: "u", count: 40)
        e.groupName = "grüppe"
        try writer.append(e, contents: bytes("ab"))
        // A file that is one hole: the map has only the closing empty entry.
        var hole = entry(bytes("hole"), .regular, size: 1 << 40)
        hole.sparseMap = try SparseMap(entries: [], realSize: 1 << 40, storedSize: 0)
        try writer.append(hole)
        try writer.finish()
        #expect(sink.bytes.contains(bytes(" mtime=-4.700000000\n")))
        // Members only: the 1 TiB hole is not read out.
        let reader = TarReader(source: MemorySource(sink.bytes))
        let first = try #require(try reader.next())
        #expect(first.modificationTime == -5 && first.modificationNanoseconds == 300_000_000)
        #expect(first.userName == e.userName && first.groupName == "grüppe")
        let content = IOBuffer(capacity: 64)
        #expect(try reader.read(into: content) == 2)
        content.withReadable { #expect(Array($0.withUnsafeBytes { Array($0) }) == bytes("ab")) }
        let second = try #require(try reader.next())
        #expect(second.name == "hole")
        #expect(second.size == 1 << 40 && second.storedSize == 0 && second.sparseMap?.regions == [])
        #expect(try reader.next() == nil)
    }

    @Test func paxRecordLengthsCountTheirOwnDigits() throws {
        var records = PAXRecords()
        // Values sized so the record length lands on 9/10 and 99/100/101,
        // where adding the length's own digits carries into another digit.
        for n in [1, 2, 3, 90, 91, 92, 93, 94, 95, 990, 991, 992, 993] {
            records.append("k", [UInt8](repeating: 0x61, count: n))
        }
        let parsed = try PAXRecords(parsing: records.encoded()[...])
        #expect(parsed.records.map(\.value) == records.records.map(\.value))
        var one = PAXRecords()
        one.append("path", "x")
        #expect(one.encoded() == bytes("9 path=x\n"))
        var carry = PAXRecords()
        carry.append("k", "aaaaa")  // 9 bytes without the length, 11 with it
        #expect(carry.encoded() == bytes("11 k=aaaaa\n"))
    }

    @Test func ustarPathSplit() {
        #expect(TarWriter.splitUstarPath(longSplittable)?.prefix == bytes("dir/" + String(repeating: "a", count: 60)))
        #expect(TarWriter.splitUstarPath(longUnsplittable) == nil)
        #expect(TarWriter.splitUstarPath([UInt8](repeating: 0x61, count: 300)) == nil)
        #expect(TarWriter.splitUstarPath(bytes("short"))?.name == bytes("short"))
    }

    // MARK: - Refusals

    private func refusal(_ e: TarEntry, _ fragments: [(Int64, [UInt8])]) -> (QBError?, MemorySink, TarWriter) {
        let sink = MemorySink()
        let writer = TarWriter(sink: sink, bufferSize: 4096)
        do {
            try writer.append(e) { (emit: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) in
                for (offset, data) in fragments { try emit(offset, data.span.bytes) }
            }
            return (nil, sink, writer)
        } catch {
            return (error, sink, writer)
        }
    }

    @Test func shortDataIsRefusedAndTheArchiveLeftTruncated() throws {
        let (error, sink, writer) = refusal(entry(bytes("f"), .regular, size: 20), [(0, pattern(10, seed: 0))])
        #expect(error?.kind == .malformed)
        #expect(error?.message == "member data ended after 10 of 20 bytes")
        #expect(error?.subject == "f")
        // Every later call fails with the same error; no end-of-archive blocks are written.
        do { try writer.finish(); Issue.record("finish after a failure succeeded") } catch {
            #expect(error.message == "member data ended after 10 of 20 bytes")
        }
        #expect(!sink.finished)
        var kind: QBError.Kind?
        do { _ = try readAllMembers(sink.bytes) } catch { kind = error.kind }
        #expect(kind == .truncated)
    }

    @Test func fragmentsThatDisagreeWithTheHeaderAreRefused() throws {
        let dense = entry(bytes("f"), .regular, size: 20)
        let tooMuch = refusal(dense, [(0, pattern(15, seed: 0)), (15, pattern(10, seed: 0))]).0
        #expect(tooMuch?.kind == .malformed && tooMuch?.message.contains("past the 20 bytes") == true, "\(String(describing: tooMuch))")
        let gap = refusal(dense, [(0, pattern(5, seed: 0)), (10, pattern(10, seed: 0))]).0
        #expect(gap?.kind == .malformed && gap?.message == "data at offset 10 where the header expects offset 5")
        let extra = refusal(dense, [(0, pattern(20, seed: 0)), (20, pattern(1, seed: 0))]).0
        #expect(extra?.kind == .malformed && extra?.message.contains("beyond the 20 bytes") == true)

        var sparse = entry(bytes("s"), .regular, size: 100)
        sparse.sparseMap = try SparseMap(entries: [SparseRegion(offset: 0, length: 10), SparseRegion(offset: 50, length: 10)],
                                         realSize: 100, storedSize: 20)
        let intoHole = refusal(sparse, [(0, pattern(20, seed: 0))]).0
        #expect(intoHole?.kind == .malformed && intoHole?.message == "data at offset 10 falls in a hole of the sparse map")
        let ok = refusal(sparse, [(0, pattern(10, seed: 0)), (50, pattern(10, seed: 1))])
        #expect(ok.0 == nil)
        var wrongMap = sparse
        wrongMap.size = 200
        #expect(refusal(wrongMap, []).0?.kind == .malformed)
        #expect(refusal(entry([], .regular), []).0?.kind == .usage)
        #expect(refusal(entry(bytes("x"), .other(UInt8(ascii: "V"))), []).0?.kind == .unsupported)
    }
}
