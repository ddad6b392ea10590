import Testing
@testable import QubesBackup

/// `width - 1` zero-padded octal digits and a NUL.
private func octalField(_ v: Int, _ width: Int) -> [UInt8] {
    let digits = String(v, radix: 8)
    return Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8) + [0]
}

/// Builds 512-byte headers by hand so each test controls every field.
private func header(name: String, type: Character = "0", size: Int = 0, mode: String = "0000644",
                    magic: [UInt8] = Array("ustar  \u{0}".utf8), sizeField: [UInt8]? = nil,
                    extra: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 512)
    func put(_ s: [UInt8], _ at: Int) { for (i, c) in s.enumerated() { b[at + i] = c } }
    put(Array(name.utf8), 0)
    put(Array((mode + "\u{0}").utf8), 100)
    put(Array("0000000\u{0}".utf8), 108)
    put(Array("0000000\u{0}".utf8), 116)
    put(sizeField ?? octalField(size, 12), 124)
    put(Array("14712345670\u{0}".utf8), 136)
    b[156] = type.asciiValue!
    put(magic, 257)
    extra(&b)
    put(Array("        ".utf8), 148)
    let sum = b.reduce(0) { $0 + Int($1) }
    put(octalField(sum, 7) + [0x20], 148)
    return b
}

private func padded(_ data: [UInt8]) -> [UInt8] {
    data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
}

private let endBlocks = [UInt8](repeating: 0, count: 1024)

/// Every member of an archive with its logical content (holes as zeros).
func readAllMembers(_ bytes: [UInt8], ignoreZeros: Bool = false, limits: TarLimits = .default) throws(QBError) -> [(TarEntry, [UInt8])] {
    let reader = TarReader(source: MemorySource(bytes), options: .init(ignoreZeros: ignoreZeros, limits: limits))
    var result: [(TarEntry, [UInt8])] = []
    let buffer = IOBuffer(capacity: 4096)
    while let e = try reader.next() {
        var content: [UInt8] = []
        while true {
            buffer.clear()
            if try reader.read(into: buffer) == 0 { break }
            buffer.withReadable { content.append(contentsOf: $0) }
        }
        result.append((e, content))
    }
    return result
}

private func errorKind(_ body: () throws(QBError) -> Void) -> QBError.Kind? {
    do { try body(); return nil } catch { return error.kind }
}

@Suite struct TarNumericTests {
    @Test(arguments: [
        ("0000644\u{0}", Int64(0o644)), ("  644 \u{0}\u{0}", Int64(0o644)), ("\u{0}\u{0}\u{0}\u{0}", Int64(0)),
        ("        ", Int64(0)), ("77777777777\u{0}", Int64(0o77777777777)), ("0000000 ", Int64(0)),
    ])
    func octal(_ field: String, _ expected: Int64) throws {
        #expect(try TarNumeric.parse(Array(field.utf8)[...], what: "x") == expected)
    }

    @Test(arguments: ["12a4\u{0}", "0644 1\u{0}", "-1\u{0}", "9\u{0}"])
    func badOctal(_ field: String) {
        #expect(errorKind { () throws(QBError) in _ = try TarNumeric.parse(Array(field.utf8)[...], what: "x") } == .malformed)
    }

    @Test func base256() throws {
        let field: [UInt8] = [0x80, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0]
        #expect(try TarNumeric.parse(field[...], what: "size") == 1 << 33)
        #expect(try TarNumeric.parse(([0x80] + [UInt8](repeating: 0xFF, count: 7))[...], what: "x") == (1 << 56) - 1)
    }

    @Test func base256NegativeAndOverflow() {
        let negative: [UInt8] = [0xFF] + [UInt8](repeating: 0xFF, count: 11)
        #expect(errorKind { () throws(QBError) in _ = try TarNumeric.parse(negative[...], what: "size") } == .malformed)
        let overflow: [UInt8] = [0x80] + [UInt8](repeating: 0xFF, count: 11)
        #expect(errorKind { () throws(QBError) in _ = try TarNumeric.parse(overflow[...], what: "size") } == .malformed)
    }

    @Test func checksumUnsignedSignedAndWrong() throws {
        var h = header(name: "a")
        #expect(try TarNumeric.checksumMatches(h))
        // A high byte in the name: store the signed sum instead, as old Sun tar did.
        h[1] = 0xE9
        var signed = 0
        for (i, c) in h.enumerated() { signed += (i >= 148 && i < 156) ? 0x20 : Int(Int8(bitPattern: c)) }
        let field = octalField(signed, 7) + [0x20]
        for (i, c) in field.enumerated() { h[148 + i] = c }
        #expect(try TarNumeric.checksumMatches(h))
        h[0] = UInt8(ascii: "b")
        #expect(try !TarNumeric.checksumMatches(h))
    }
}

@Suite struct PAXRecordTests {
    @Test func parsesInOrder() throws {
        let text = "29 GNU.sparse.offset=1048576\n25 GNU.sparse.numbytes=5\n16 path=a/b=c d\n"
        let r = try PAXRecords(parsing: Array(text.utf8)[...])
        #expect(r.records.map(\.key) == ["GNU.sparse.offset", "GNU.sparse.numbytes", "path"])
        #expect(r["path"] == Array("a/b=c d".utf8))
    }

    @Test(arguments: [
        "17 path=abc\n",      // length beyond the data
        "11 path=abc\n",      // one too small: newline not at the end
        "016 path=abc\n",     // leading zero
        "16 path=abc",        // runs off the end
        "9 =abcde\n",         // empty key
        "12 pathabc\n",       // no '='
        "x6 path=abc\n",      // not a number
        "3 \n",               // shorter than its own length field
        "99999999999999999999 path=a\n",
    ])
    func rejectsBadRecords(_ text: String) {
        #expect(errorKind { () throws(QBError) in _ = try PAXRecords(parsing: Array(text.utf8)[...]) } == .malformed)
    }
}

@Suite struct SparseMapTests {
    @Test func validMapAndHoles() throws {
        let map = try SparseMap(entries: [.init(offset: 0, length: 512), .init(offset: 4096, length: 1024), .init(offset: 10000, length: 0)],
                                realSize: 10000, storedSize: 1536)
        #expect(map.regions == [.init(offset: 0, length: 512), .init(offset: 4096, length: 1024)])
        #expect(map.holes == [.init(offset: 512, length: 3584), .init(offset: 5120, length: 4880)])
    }

    @Test(arguments: [
        ([(0, 512), (256, 512)], 4096, 1024),         // overlap
        ([(1024, 512), (0, 512)], 4096, 1024),        // out of order
        ([(0, 512), (4000, 512)], 4096, 1024),        // beyond realsize
        ([(0, 512)], 4096, 1024),                     // stores more than mapped
        ([(0, 512), (1024, 512)], 4096, 512),         // maps more than stored
        ([(-1, 512)], 4096, 512),                     // negative
        ([(Int64.max, 1)], Int64.max, 1),             // offset + length overflows
    ] as [([(Int64, Int64)], Int64, Int64)])
    func rejects(_ entries: [(Int64, Int64)], _ real: Int64, _ stored: Int64) {
        let regions = entries.map { SparseRegion(offset: $0.0, length: $0.1) }
        #expect(errorKind { () throws(QBError) in _ = try SparseMap(entries: regions, realSize: real, storedSize: stored) } == .malformed)
    }
}

@Suite struct TarReaderTests {
    @Test func plainMembersAndEnd() throws {
        let a = Array("hello".utf8)
        let archive = header(name: "a.txt", size: 5) + padded(a) + header(name: "d/", type: "5") + endBlocks + [UInt8](repeating: 0, count: 8192)
        let members = try readAllMembers(archive)
        #expect(members.map(\.0.name) == ["a.txt", "d/"])
        #expect(members[0].1 == a)
        #expect(members[1].0.kind == .directory)
        #expect(members[0].0.rawHeader == header(name: "a.txt", size: 5))
    }

    @Test func endRules() {
        let member = header(name: "a", size: 3) + padded([1, 2, 3])
        // No zero block at all, or the input stops inside data: truncated.
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(member) } == .truncated)
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(Array(member.prefix(515))) } == .truncated)
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers([]) } == .truncated)
        // One zero block then EOF, or then a partial run of zeros (Qubes' sparse writer): a proper end.
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(member + [UInt8](repeating: 0, count: 512)) } == nil)
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(member + [UInt8](repeating: 0, count: 700)) } == nil)
        // A partial non-zero tail, or data after the end: refused.
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(member + [UInt8](repeating: 0, count: 700) + [1]) } != nil)
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(member + endBlocks + [0, 0, 7]) } == .malformed)
        // A lone zero block followed by a member is an end only with ignoreZeros.
        let two = member + [UInt8](repeating: 0, count: 512) + member + endBlocks
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(two) } == .malformed)
        #expect((try? readAllMembers(two + endBlocks, ignoreZeros: true).count) == 2)
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(member + endBlocks + member, ignoreZeros: true) } == .truncated)
    }

    @Test func errorsAreSticky() throws {
        var bad = header(name: "a", size: 3)
        bad[0] = UInt8(ascii: "b")  // checksum now wrong
        let reader = TarReader(source: MemorySource(bad + endBlocks))
        #expect(errorKind { () throws(QBError) in _ = try reader.next() } == .malformed)
        let second = errorKind { () throws(QBError) in _ = try reader.next() }
        #expect(second == .malformed)
    }

    @Test func oldGNUSparseWithExtensionBlock() throws {
        // Six regions: four in the header, two in one extension block.
        let regions: [(Int, Int)] = [(0, 512), (2048, 512), (4096, 512), (8192, 512), (16384, 512), (32768, 512)]
        let octal = octalField
        let h = header(name: "sparse.img", type: "S", size: 6 * 512) { b in
            for (i, r) in regions.prefix(4).enumerated() {
                for (k, c) in octal(r.0, 12).enumerated() { b[386 + i * 24 + k] = c }
                for (k, c) in octal(r.1, 12).enumerated() { b[386 + i * 24 + 12 + k] = c }
            }
            b[482] = 1
            for (k, c) in octal(65536, 12).enumerated() { b[483 + k] = c }
        }
        var ext = [UInt8](repeating: 0, count: 512)
        for (i, r) in regions.suffix(2).enumerated() {
            for (k, c) in octal(r.0, 12).enumerated() { ext[i * 24 + k] = c }
            for (k, c) in octal(r.1, 12).enumerated() { ext[i * 24 + 12 + k] = c }
        }
        var data: [UInt8] = []
        for i in 0..<6 { data += [UInt8](repeating: UInt8(i + 1), count: 512) }
        let members = try readAllMembers(h + ext + data + endBlocks)
        let (entry, content) = members[0]
        #expect(entry.size == 65536 && entry.storedSize == 3072)
        #expect(entry.rawHeader == h + ext)
        var expected = [UInt8](repeating: 0, count: 65536)
        for (i, r) in regions.enumerated() { for k in 0..<512 { expected[r.0 + k] = UInt8(i + 1) } }
        #expect(content == expected)

        // Fragments carry logical offsets and skip the holes.
        let reader = TarReader(source: MemorySource(h + ext + data + endBlocks))
        _ = try reader.next()
        var offsets: [Int64] = []
        while try reader.readFragment({ (offset, bytes) throws(QBError) in
            #expect(bytes.byteCount == 512)
            offsets.append(offset)
        }) {}
        #expect(offsets == regions.map { Int64($0.0) })
        #expect(try reader.next() == nil)
    }

    @Test func limits() {
        // A PAX header larger than the 1 MiB limit is refused before it is read.
        let big = header(name: "././@PaxHeader", type: "x", size: 2 << 20, magic: Array("ustar\u{0}00".utf8))
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(big + [UInt8](repeating: 0, count: 4096)) } == .limitExceeded)
        // A long name over the name limit.
        var limits = TarLimits.default
        limits.maxNameLength = 100
        let long = header(name: "././@LongLink", type: "L", size: 300) + padded([UInt8](repeating: 0x61, count: 300)) + header(name: "x") + endBlocks
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(long, limits: limits) } == .limitExceeded)
        // A negative base-256 size.
        let negative = header(name: "neg", sizeField: [0xFF] + [UInt8](repeating: 0xFF, count: 11))
        #expect(errorKind { () throws(QBError) in _ = try readAllMembers(negative + endBlocks) } == .malformed)
    }

    @Test func memberPaths() throws {
        #expect(try MemberPath(Array("vm9/./private.img".utf8)).string == "vm9/private.img")
        #expect(try MemberPath(Array("./a//b/".utf8)).components.count == 2)
        #expect(errorKind { () throws(QBError) in _ = try MemberPath(Array("/etc/passwd".utf8)) } == .unsafe)
        #expect(errorKind { () throws(QBError) in _ = try MemberPath(Array("a/../../b".utf8)) } == .unsafe)
        #expect(errorKind { () throws(QBError) in _ = try MemberPath(Array("..".utf8)) } == .unsafe)
        #expect(try MemberPath(Array("a/..b/c..".utf8)).components.count == 3)
    }
}

/// One PAX record `LEN key=value\n` whose LEN counts itself.
private func paxRecord(_ key: String, _ value: [UInt8]) -> [UInt8] {
    let body = Array(" \(key)=".utf8) + value + [0x0A]
    var length = body.count + 1
    while String(length).count + body.count != length { length += 1 }
    return Array(String(length).utf8) + body
}

/// A PAX `x` member holding `records`.
private func paxHeader(_ records: [UInt8]) -> [UInt8] {
    header(name: "PaxHeaders/x", type: "x", size: records.count, magic: Array("ustar\u{0}00".utf8)) + padded(records)
}

/// Each TarLimits bound at its value (accepted) and one over (refused as
/// `.limitExceeded`, saying which limit); the defaults are checked where the
/// archive to reach them is small, lowered otherwise.
@Suite struct TarLimitTests {
    func refusal(_ bytes: [UInt8], limits: TarLimits = .default) -> QBError? {
        do { _ = try readAllMembers(bytes, limits: limits); return nil } catch { return error }
    }

    @Test func extendedHeadersUpTo1MiB() throws {
        #expect(TarLimits.default.maxSpecialHeaderSize == 1 << 20)
        func archive(recordSize: Int) -> [UInt8] {
            let filler = [UInt8](repeating: 0x61, count: recordSize - paxRecord("comment", []).count)
            var record = paxRecord("comment", filler)
            while record.count > recordSize { record = paxRecord("comment", Array(filler.dropLast(record.count - recordSize))) }
            return paxHeader(record) + header(name: "f", size: 3) + padded([1, 2, 3]) + endBlocks
        }
        let members = try readAllMembers(archive(recordSize: 1 << 20))
        #expect(members.count == 1 && members[0].1 == [1, 2, 3])
        let error = refusal(archive(recordSize: (1 << 20) + 1))
        #expect(error?.kind == .limitExceeded)
        #expect(error?.message == "extended header of 1048577 bytes is over the limit of 1048576", "\(String(describing: error))")
    }

    @Test func namesUpTo64KiB() throws {
        #expect(TarLimits.default.maxNameLength == 65_536)
        func archive(_ length: Int) -> [UInt8] {
            paxHeader(paxRecord("path", [UInt8](repeating: 0x61, count: length))) + header(name: "short") + endBlocks
        }
        let members = try readAllMembers(archive(65_536))
        #expect(members.first?.0.path.count == 65_536)
        let error = refusal(archive(65_537))
        #expect(error?.kind == .limitExceeded)
        #expect(error?.message == "member name longer than 65536 bytes")
        // GNU long names: the stored name ends with a NUL, which counts.
        let gnu = header(name: "././@LongLink", type: "L", size: 65_536) + padded([UInt8](repeating: 0x62, count: 65_535) + [0])
            + header(name: "short") + endBlocks
        #expect(try readAllMembers(gnu).first?.0.path.count == 65_535)
        let over = header(name: "././@LongLink", type: "L", size: 65_537) + padded([UInt8](repeating: 0x62, count: 65_536) + [0])
            + header(name: "short") + endBlocks
        #expect(refusal(over)?.message == "long name of 65537 bytes is over the limit of 65536")
    }

    @Test func sixteenExtensionHeadersPerMember() throws {
        #expect(TarLimits.default.maxMetaMembers == 16)
        func archive(_ count: Int) -> [UInt8] {
            (0..<count).flatMap { i in paxHeader(paxRecord("comment", Array("\(i)".utf8))) } + header(name: "f") + endBlocks
        }
        #expect(try readAllMembers(archive(16)).count == 1)
        let error = refusal(archive(17))
        #expect(error?.kind == .limitExceeded)
        #expect(error?.message == "more than 16 extended headers for one member")
    }

    @Test func memberSizeLimit() throws {
        #expect(TarLimits.default.maxMemberSize == 1 << 50)
        var limits = TarLimits.default
        limits.maxMemberSize = 1024
        let data = [UInt8](repeating: 7, count: 1024)
        #expect(try readAllMembers(header(name: "f", size: 1024) + data + endBlocks, limits: limits).first?.1 == data)
        let error = refusal(header(name: "f", size: 1025) + padded(data + [7]) + endBlocks, limits: limits)
        #expect(error?.kind == .limitExceeded)
        #expect(error?.message == "member size 1025 is over the limit")
    }

    /// PAX 0.1 (`GNU.sparse.map`), PAX 0.0 (offset/numbytes pairs), PAX 1.0
    /// (map in the data) and old GNU (`S` with extension blocks): n regions
    /// of 512 bytes, 512 apart.
    static func sparse(_ format: String, regions n: Int) -> [UInt8] {
        let data = [UInt8](repeating: 0x5A, count: 512 * n)
        let real = Array(String(1024 * n).utf8)
        let pairs = (0..<n).map { (1024 * $0 + 512, 512) }
        switch format {
        case "0.1":
            let map = pairs.map { "\($0.0),\($0.1)" }.joined(separator: ",")
            return paxHeader(paxRecord("GNU.sparse.size", real) + paxRecord("GNU.sparse.map", Array(map.utf8)))
                + header(name: "s", size: data.count) + data + endBlocks
        case "0.0":
            let records = pairs.flatMap { paxRecord("GNU.sparse.offset", Array(String($0.0).utf8)) + paxRecord("GNU.sparse.numbytes", Array(String($0.1).utf8)) }
            return paxHeader(paxRecord("GNU.sparse.size", real) + records) + header(name: "s", size: data.count) + data + endBlocks
        case "1.0":
            let map = padded(Array(("\(n)\n" + pairs.map { "\($0.0)\n\($0.1)\n" }.joined()).utf8))
            return paxHeader(paxRecord("GNU.sparse.major", Array("1".utf8)) + paxRecord("GNU.sparse.minor", Array("0".utf8))
                             + paxRecord("GNU.sparse.realsize", real) + paxRecord("GNU.sparse.name", Array("s".utf8)))
                + header(name: "GNUSparseFile.0/s", size: map.count + data.count) + map + data + endBlocks
        default:
            // Old GNU: 4 entries in the header, 21 in each extension block.
            func entry(_ p: (Int, Int)) -> [UInt8] { octalField(p.0, 12) + octalField(p.1, 12) }
            let inHeader = Array(pairs.prefix(4)), rest = Array(pairs.dropFirst(4))
            let chunks = stride(from: 0, to: rest.count, by: 21).map { Array(rest[$0..<min($0 + 21, rest.count)]) }
            let h = header(name: "s", type: "S", size: data.count, magic: Array("ustar  \u{0}".utf8)) { b in
                for (i, p) in inHeader.enumerated() { b.replaceSubrange((386 + 24 * i)..<(410 + 24 * i), with: entry(p)) }
                b[482] = chunks.isEmpty ? 0 : 1
                b.replaceSubrange(483..<495, with: octalField(1024 * n, 12))
            }
            let extensions = chunks.enumerated().flatMap { (k, chunk) -> [UInt8] in
                var block = [UInt8](repeating: 0, count: 512)
                for (i, p) in chunk.enumerated() { block.replaceSubrange((24 * i)..<(24 * i + 24), with: entry(p)) }
                block[504] = k + 1 < chunks.count ? 1 : 0
                return block
            }
            return h + extensions + data + endBlocks
        }
    }

    @Test(arguments: ["0.1", "0.0", "1.0", "old GNU"])
    func sparseMapEntriesUpToTheLimit(format: String) throws {
        #expect(TarLimits.default.maxSparseEntries == 1_000_000)
        var limits = TarLimits.default
        limits.maxSparseEntries = 30
        let members = try readAllMembers(Self.sparse(format, regions: 30), limits: limits)
        #expect(members.count == 1 && members[0].0.size == 30 * 1024, "\(format)")
        #expect(members.first?.1.count == 30 * 1024)
        let error = refusal(Self.sparse(format, regions: 31), limits: limits)
        #expect(error?.kind == .limitExceeded, "\(format): \(String(describing: error))")
        #expect(error?.message == "sparse map has more than 30 entries", "\(format)")
    }

    /// Old GNU extension blocks with no entries add nothing to the map; a
    /// chain of them is still bounded (by the blocks the limit could need).
    @Test func emptySparseExtensionBlocksAreBounded() {
        var limits = TarLimits.default
        limits.maxSparseEntries = 42
        let h = header(name: "s", type: "S", size: 0, magic: Array("ustar  \u{0}".utf8)) { b in
            b[482] = 1
            b.replaceSubrange(483..<495, with: octalField(0, 12))
        }
        var chained = [UInt8](repeating: 0, count: 512)
        chained[504] = 1
        // 42 / 21 + 1 = 3 blocks are allowed; the fourth is refused.
        let last = [UInt8](repeating: 0, count: 512)
        #expect(refusal(h + Array([[UInt8]](repeating: chained, count: 2).joined()) + last + endBlocks, limits: limits) == nil)
        let error = refusal(h + Array([[UInt8]](repeating: chained, count: 100).joined()) + last + endBlocks, limits: limits)
        #expect(error?.kind == .limitExceeded)
        #expect(error?.message == "sparse map has more than 42 entries")
    }

    /// PAX 1.0 map numbers: 20 digits (leading zeros) accepted, 21 refused,
    /// so a map of endless zeros is not read to the end of the member.
    @Test func sparse10NumbersAreBounded() throws {
        func archive(countField: String, dataBlocks: Int = 0) -> [UInt8] {
            let map = padded(Array("\(countField)\n0\n512\n".utf8))
            let data = [UInt8](repeating: 0x5A, count: 512)
            return paxHeader(paxRecord("GNU.sparse.major", Array("1".utf8)) + paxRecord("GNU.sparse.minor", Array("0".utf8))
                             + paxRecord("GNU.sparse.realsize", Array("512".utf8)) + paxRecord("GNU.sparse.name", Array("s".utf8)))
                + header(name: "GNUSparseFile.0/s", size: map.count + data.count) + map + data + endBlocks
        }
        let twenty = String(repeating: "0", count: 19) + "1"
        #expect(try readAllMembers(archive(countField: twenty)).first?.1.count == 512)
        let error = refusal(archive(countField: "0" + twenty))
        #expect(error?.kind == .limitExceeded)
        #expect(error?.message == "PAX sparse 1.0 map number longer than 20 digits")
        // A megabyte of zeros where the count should be stops at the 21st.
        let zeros = [UInt8](repeating: 0x30, count: 1 << 20)
        let hostile = paxHeader(paxRecord("GNU.sparse.major", Array("1".utf8)) + paxRecord("GNU.sparse.minor", Array("0".utf8))
                                + paxRecord("GNU.sparse.realsize", Array("512".utf8)))
            + header(name: "GNUSparseFile.0/s", size: zeros.count) + zeros + endBlocks
        #expect(refusal(hostile)?.message == "PAX sparse 1.0 map number longer than 20 digits")
    }
}
