import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// A source over runs of real bytes and of zeros that are never stored, so
/// that a backup of gigabytes costs nothing; seekable (as a regular file
/// is) or not (as a pipe is). It counts what it hands out and what it is
/// asked to pass over.
final class CountingSource: ByteSource {
    enum Segment {
        case bytes([UInt8])
        case zeros(Int64)

        var count: Int64 {
            switch self {
            case .bytes(let b): Int64(b.count)
            case .zeros(let n): n
            }
        }
    }

    private let segments: [Segment]
    /// Where each segment starts.
    private let starts: [Int64]
    let length: Int64
    let seekable: Bool
    private var position: Int64 = 0
    private(set) var bytesRead: Int64 = 0
    private(set) var bytesSkipped: Int64 = 0
    private static let zeros = [UInt8](repeating: 0, count: 1 << 16)

    init(_ segments: [Segment], seekable: Bool) {
        self.segments = segments
        var starts: [Int64] = []
        var at: Int64 = 0
        for s in segments { starts.append(at); at += s.count }
        self.starts = starts
        length = at
        self.seekable = seekable
    }

    /// The same runs cut after `count` bytes.
    func prefix(_ count: Int64, seekable: Bool) -> CountingSource {
        var kept: [Segment] = []
        for (segment, start) in zip(segments, starts) where start < count {
            let n = min(segment.count, count - start)
            switch segment {
            case .bytes(let b): kept.append(.bytes(Array(b[..<Int(n)])))
            case .zeros: kept.append(.zeros(n))
            }
        }
        return CountingSource(kept, seekable: seekable)
    }

    func read(into buffer: IOBuffer) throws(QBError) -> Int { try read(into: buffer, atMost: buffer.freeCapacity) }

    func read(into buffer: IOBuffer, atMost limit: Int) throws(QBError) -> Int {
        guard position < length else { return 0 }
        let index = starts.lastIndex { $0 <= position }!
        let offset = position - starts[index]
        let n = Int(min(Int64(min(limit, buffer.freeCapacity, Self.zeros.count)), segments[index].count - offset))
        switch segments[index] {
        case .bytes(let b): buffer.append(b[Int(offset)..<(Int(offset) + n)])
        case .zeros: buffer.append(Self.zeros[..<n])
        }
        position += Int64(n)
        bytesRead += Int64(n)
        return n
    }

    func skip(_ count: Int64) throws(QBError) -> Int64 {
        guard seekable else { return 0 }
        let n = min(count, length - position)
        position += n
        bytesSkipped += n
        return n
    }
}

/// A ustar header block for a regular member (or `type`), by hand.
private func ustarHeader(_ name: String, size: Int64, type: UInt8 = UInt8(ascii: "0"), offset: Int64? = nil) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 512)
    func put(_ s: String, _ at: Int) { for (i, c) in s.utf8.enumerated() { b[at + i] = c } }
    func octal(_ v: Int64, _ at: Int, _ width: Int) {
        let digits = String(v, radix: 8)
        put(String(repeating: "0", count: width - 1 - digits.count) + digits, at)
    }
    put(name, 0)
    put("0000644", 100); put("0000000", 108); put("0000000", 116)
    octal(size, 124, 12)
    octal(1_796_040_000, 136, 12)
    b[156] = type
    put("ustar  ", 257)
    if let offset { octal(offset, 369, 12) }
    put("        ", 148)
    octal(Int64(b.reduce(0) { $0 + Int($1) }), 148, 7)
    return b
}

/// The runs of one member archive as Qubes' writer lays it out (FORMAT.md
/// §3.1): header, data (zeros, never stored), two zero blocks, padding to
/// the 10,240-byte record.
private func placeholderMember(_ name: String, size: Int64) -> [CountingSource.Segment] {
    let data = (size + 511) / 512 * 512
    let total = (512 + data + 1024 + 10_239) / 10_240 * 10_240
    return [.bytes(ustarHeader(name, size: size)), .zeros(total - 512)]
}

/// Where each member archive of a backup starts (its first header after
/// zero blocks), with the member's name: a few lines of tar, not the reader
/// under test.
private func memberArchives(_ bytes: [UInt8]) -> [(start: Int, name: String, dataStart: Int, dataEnd: Int)] {
    var found: [(start: Int, name: String, dataStart: Int, dataEnd: Int)] = []
    var p = 0, start: Int?
    while p + 512 <= bytes.count {
        if bytes[p..<(p + 512)].allSatisfy({ $0 == 0 }) { p += 512; continue }
        if start == nil { start = p }
        let field = bytes[(p + 124)..<(p + 136)].filter { (0x30...0x37).contains($0) }
        let size = Int(String(decoding: field, as: UTF8.self), radix: 8) ?? 0
        let end = p + 512 + (size + 511) / 512 * 512
        if bytes[p + 156] != UInt8(ascii: "x") {
            let name = String(decoding: bytes[p..<(p + 100)].prefix { $0 != 0 }, as: UTF8.self)
            found.append((start!, name, p + 512, p + 512 + size))
            start = nil
        }
        p = end
    }
    return found
}

/// Restores the files `wanted` accepts into `directory`, the rest routed
/// past; what qb-restore does with VM names.
private func restore(_ source: ByteSource, passphrase: String, into directory: URL, blockSize: Int = IOBuffer.defaultCapacity,
                     wanted: (String) -> Bool) throws(QBError) -> [(file: String, chunks: Int)] {
    let files = try BackupRestore(source: source, passphrase: Secret(passphrase),
                                  options: RestoreOptions(parallelism: 2, blockSize: blockSize))
        .readHeader().readVMList()
    return try files.process { (file) throws(QBError) -> BackupRestore.Route in
        guard wanted(file) else { return .skip }
        return .stream(InnerArchiveTarget(directory: directory.path, relocation: try MemberRelocation(within: file, stripComponents: 0)))
    }
}

/// What a restore left: regular files' bytes by relative path.
private func snapshot(_ root: URL) throws -> [String: Data] {
    var nodes: [String: Data] = [:]
    let fm = FileManager.default
    guard let walk = fm.enumerator(atPath: root.path) else { return nodes }
    while let relative = walk.nextObject() as? String {
        let url = root.appendingPathComponent(relative)
        if (try fm.attributesOfItem(atPath: url.path)[.type] as? FileAttributeType) == .typeRegular {
            nodes[relative] = try Data(contentsOf: url)
        }
    }
    return nodes
}

/// What a restore gave: the files it left, or its error to the letter.
private enum Outcome: Equatable, CustomStringConvertible {
    case restored([String: Data])
    case refused(QBError.Kind, String)

    init(_ body: () throws(QBError) -> URL) {
        do throws(QBError) {
            let dir = try body()
            self = .restored((try? snapshot(dir)) ?? [:])
        } catch {
            self = .refused(error.kind, error.description)
        }
    }

    var description: String {
        switch self {
        case .restored(let files): "restored \(files.mapValues(\.count).sorted { $0.key < $1.key })"
        case .refused(let kind, let message): "\(kind): \(message)"
        }
    }
}

/// Issue 23: data nobody reads is skipped where the input can seek, read
/// through where it cannot, and the outcome — files, errors — is the same
/// either way; only the bytes read differ.
@Suite struct SkippingReadTests {
    /// v4-gzip.qubes with a 1.5 GiB VM spliced in after qubes.xml: 16
    /// chunks of 100 MiB whose data is never stored (they are never
    /// authenticated when skipped; nothing in qubes.xml names vm5).
    static func largeThenSmall() throws -> (segments: [CountingSource.Segment], bytes: [UInt8]) {
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture("v4-gzip.qubes")))
        let archives = memberArchives(bytes)
        let splice = try #require(archives.first { $0.name.hasPrefix("vm") }).start
        var segments: [CountingSource.Segment] = [.bytes(Array(bytes[..<splice]))]
        var left: Int64 = 1536 << 20, index = 0
        while left > 0 {
            let n = min(left, 100 << 20)
            segments += placeholderMember("vm5/private.img." + ChunkName.spell(index) + ".enc", size: n + 128)
            left -= n
            index += 1
        }
        segments.append(.bytes(Array(bytes[splice...])))
        return (segments, bytes)
    }

    @Test func oneSmallVMAfterALargeOneReadsLittleFromAFile() throws {
        let (segments, _) = try Self.largeThenSmall()
        let fixture = try Manifest.entry("v4-gzip.qubes")
        var restored: [[String: Data]] = []
        for seekable in [true, false] {
            let source = CountingSource(segments, seekable: seekable)
            let dir = try ScratchDirectory()
            let files = try restore(source, passphrase: "qubes", into: dir.url) { $0.hasPrefix("vm3/") }
            #expect(files.map(\.file).contains("vm5/private.img"))
            #expect(files.first { $0.file == "vm5/private.img" }?.chunks == 16)
            let problems = try Manifest.mismatches(fixture, under: dir.url) { vm, _, path in vm == "work" ? path : nil }
            #expect(problems.isEmpty, "seekable \(seekable): \(problems)")
            restored.append(try snapshot(dir.url))
            if seekable {
                #expect(source.bytesRead <= 64 << 20, "\(source.bytesRead) bytes read")
                #expect(source.bytesRead + source.bytesSkipped == source.length)
            } else {
                // From a pipe, everything is read, as before.
                #expect(source.bytesRead == source.length)
                #expect(source.bytesSkipped == 0)
            }
        }
        #expect(restored[0] == restored[1])
        #expect(restored[0].keys.allSatisfy { $0.hasPrefix("vm3/") } && !restored[0].isEmpty)
    }

    /// qb-restore --list: the header and qubes.xml, then the next member's
    /// header to know qubes.xml ended; not a byte of the VM chunk behind it.
    @Test func theVMListStopsAfterQubesXML() throws {
        let (segments, _) = try Self.largeThenSmall()
        for seekable in [true, false] {
            let source = CountingSource(segments, seekable: seekable)
            let files = try BackupRestore(source: source, passphrase: Secret("qubes"), options: RestoreOptions(parallelism: 2))
                .readHeader().readVMList()
            #expect(files.vms?.filter(\.included).map(\.name).sorted() == ["standalone", "vault", "work"])
            // One buffer (1 MiB) read ahead, at most.
            #expect(source.bytesRead <= 2 << 20, "seekable \(seekable): \(source.bytesRead) bytes read")
        }
    }

    /// Cut inside a skipped chunk, at the end of its data, in its padding:
    /// the error is the one reading through gives, and it is never success
    /// where the input ends inside a member. (A cut after a member
    /// archive's first zero block is a whole backup of fewer files, as
    /// reading through finds it too; qb-restore's completeness rules are
    /// what refuse it: RestoreToolTests.)
    @Test func aCutInsideSkippedDataIsTheSameTruncation() throws {
        let (segments, _) = try Self.largeThenSmall()
        let whole = CountingSource(segments, seekable: true)
        let firstChunk: Int64 = {
            var at: Int64 = 0
            for s in segments {
                if case .zeros = s { return at - 512 }
                at += s.count
            }
            return 0
        }()
        let chunk: Int64 = 104_857_728
        let archive: Int64 = (512 + chunk + 1024 + 10_239) / 10_240 * 10_240
        let data: Int64 = firstChunk + 512
        let mib: Int64 = 1 << 20
        let cuts: [Int64] = [
            data + 1,                               // inside the first chunk's data
            data + 50 * mib,                        // its middle
            data + chunk - 1,                       // one byte short
            data + chunk,                           // right after its data
            data + chunk + 100,                     // inside the padding of its last block
            data + 7 * archive + 3 * mib,           // inside chunk 007
            firstChunk + 15 * archive + 100,        // in the last chunk's header
        ]
        for cut in cuts {
            var outcomes: [Outcome] = []
            for seekable in [true, false] {
                let source = whole.prefix(cut, seekable: seekable)
                let dir = try ScratchDirectory()
                outcomes.append(Outcome { () throws(QBError) -> URL in
                    _ = try restore(source, passphrase: "qubes", into: dir.url) { $0.hasPrefix("vm3/") }
                    return dir.url
                })
                if seekable { #expect(source.bytesRead <= 64 << 20, "cut at \(cut): \(source.bytesRead) bytes read") }
            }
            #expect(outcomes[0] == outcomes[1], "cut at \(cut): \(outcomes)")
            guard case .refused(.truncated, _) = outcomes[0] else {
                Issue.record("cut at \(cut): \(outcomes[0])")
                continue
            }
        }
    }

    /// A fixture of each version, one VM restored, cut where a skip can
    /// meet the end of the input — inside a member's data, right after it,
    /// inside the zero blocks that end its archive — and whole: from a
    /// seekable source and from one that is not, the same files or the
    /// same error, to the letter. (TruncationSweepTests cuts every
    /// fixture at every boundary, reading through.)
    @Test(arguments: ["v2-aes-gzip.qubes", "v3-aes-gzip.qubes", "v4-gzip.qubes"])
    func skippingChangesNothingButTheBytesRead(file: String) throws {
        let fixture = try Manifest.entry(file)
        let passphrase = fixture["passphrase"] as! String
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let archives = memberArchives(bytes)
        // The VM whose files come last: everything before it is skipped.
        let last = try #require(archives.last { $0.name.hasPrefix("vm") }).name
        let vm = String(last.prefix { $0 != "/" }) + "/"
        var cuts: Set<Int> = [bytes.count]
        for a in archives {
            for c in [a.dataStart + 1, a.dataEnd, (a.dataEnd + 511) / 512 * 512 + 700] {
                if c > 0 && c <= bytes.count { cuts.insert(c) }
            }
        }
        var skipped: Int64 = 0
        for cut in cuts.sorted() {
            var outcomes: [Outcome] = []
            for seekable in [true, false] {
                let source = CountingSource([.bytes(Array(bytes[..<cut]))], seekable: seekable)
                let dir = try ScratchDirectory()
                // 4 KiB buffers: the fixtures are smaller than one read of
                // the default 1 MiB, which would leave nothing to skip.
                outcomes.append(Outcome { () throws(QBError) -> URL in
                    _ = try restore(source, passphrase: passphrase, into: dir.url, blockSize: 4096) { $0.hasPrefix(vm) }
                    return dir.url
                })
                if seekable { skipped += source.bytesSkipped }
            }
            #expect(outcomes[0] == outcomes[1], "\(file) cut at \(cut): \(outcomes)")
        }
        #expect(skipped > 0, "\(file): nothing was skipped")
    }
}

/// The tar reader's own skipping: every header read, the end rules and
/// volume continuations checked as when reading through.
@Suite struct TarReaderSkippingTests {
    static let endBlocks = [UInt8](repeating: 0, count: 1024)

    @Test func listingReadsHeadersOnly() throws {
        var segments: [CountingSource.Segment] = []
        for i in 0..<8 { segments += [.bytes(ustarHeader("m\(i)", size: 10 << 20)), .zeros(10 << 20)] }
        segments.append(.bytes(Self.endBlocks))
        for seekable in [true, false] {
            let source = CountingSource(segments, seekable: seekable)
            let reader = TarReader(source: source)
            var names: [String] = []
            while let e = try reader.next() { names.append(e.name) }
            #expect(names == (0..<8).map { "m\($0)" })
            if seekable {
                // The first read fills the 1 MiB buffer; after that, a
                // small read per header.
                #expect(source.bytesRead <= (1 << 20) + 8 * TarReader.readAfterSkip, "\(source.bytesRead)")
            } else {
                #expect(source.bytesRead == source.length)
            }
        }
    }

    /// Cut anywhere in a skipped member: truncated, with the same message
    /// as reading through, even though a seek past the end would succeed.
    @Test func aSkippedMemberCutShortIsTruncated() throws {
        let segments: [CountingSource.Segment] = [
            .bytes(ustarHeader("big", size: 5 << 20)), .zeros(5 << 20),
            .bytes(ustarHeader("tail", size: 3)), .bytes([1, 2, 3] + [UInt8](repeating: 0, count: 509)), .bytes(Self.endBlocks),
        ]
        let whole = CountingSource(segments, seekable: true)
        for cut: Int64 in [513, 2 << 20, (5 << 20) + 511, (5 << 20) + 512, (5 << 20) + 1024 + 100] {
            var outcomes: [String] = []
            for seekable in [true, false] {
                let reader = TarReader(source: whole.prefix(cut, seekable: seekable))
                do throws(QBError) {
                    while try reader.next() != nil {}
                    outcomes.append("success")
                } catch {
                    outcomes.append("\(error.kind): \(error.description)")
                }
            }
            #expect(outcomes[0] == outcomes[1], "cut at \(cut): \(outcomes)")
            #expect(outcomes[0].hasPrefix("truncated: "), "cut at \(cut): \(outcomes[0])")
        }
    }

    /// A member running across two volumes, skipped: the second volume's
    /// continuation header is still read and checked.
    @Test func aSkipStopsAtTheVolumeAndItsContinuationIsChecked() throws {
        let size: Int64 = 3 << 20, first: Int64 = 2 << 20
        func volumes(continuationSize: Int64, seekable: Bool) -> (TarVolumeList, [CountingSource]) {
            let one = CountingSource([.bytes(ustarHeader("big", size: size)), .zeros(first)], seekable: seekable)
            let two = CountingSource([.bytes(ustarHeader("big", size: continuationSize, type: UInt8(ascii: "M"), offset: first)),
                                      .zeros(size - first), .bytes(ustarHeader("tail", size: 0)), .bytes(Self.endBlocks)],
                                     seekable: seekable)
            return (TarVolumeList([one, two]), [one, two])
        }
        for seekable in [true, false] {
            let (good, sources) = volumes(continuationSize: size - first, seekable: seekable)
            let reader = TarReader(volumes: good)
            var names: [String] = []
            while let e = try reader.next() { names.append(e.name) }
            #expect(names == ["big", "tail"])
            if seekable { #expect(sources.allSatisfy { $0.bytesSkipped > 0 }) }

            let (bad, _) = volumes(continuationSize: size - first + 512, seekable: seekable)
            let refused = TarReader(volumes: bad)
            var message = ""
            do throws(QBError) { while try refused.next() != nil {} } catch { message = "\(error.kind): \(error.description)" }
            #expect(message.hasPrefix("malformed: big: continuation header does not match"), "\(message)")
        }
    }
}
