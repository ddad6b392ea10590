import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// Every valid fixture cut at every 512-byte boundary (and at a few odd
/// offsets), restored in process — header, qubes.xml, every file extracted
/// into a scratch directory, the same stages qb-restore runs. A cut backup
/// must be refused as truncated or malformed, and whatever it left under a
/// final name must be byte-for-byte what the whole backup restores: partial
/// files only ever carry `.qb-tmp-*` names, and those are removed on error.
///
/// One kind of cut is accepted, and the test checks it is the only one: a
/// cut inside the end-of-archive zero padding of one of the concatenated
/// member archives (FORMAT.md §3.1), after at least one of its zero blocks,
/// when the members before it end a backed-up file. A cut right after a
/// member's data, before any zero block, is refused as truncated: the
/// reader asks for the end-of-archive block even with `-i`. The outer stream is read as `tar -i` reads it: zero
/// blocks are skipped and none are required at the end (§3.2), so such a
/// stream is a complete, authenticated backup of fewer files. Nothing in
/// the format records how many files or chunks follow (§5.2: "Not covered:
/// the absence of chunks or whole files"); qb-restore warns when a VM it
/// was asked for has no files at all. What the files that were restored
/// contain is checked: they must be complete.
@Suite struct TruncationSweepTests {
    static let valid: [String] = Manifest.files { $0.valid }

    /// The parameterized tests below run one case per valid fixture: none
    /// when the manifest does not load, which must fail, not pass.
    @Test func hasItsCases() throws {
        _ = try Manifest.loaded.get()
        #expect(Self.valid.count >= 11, "\(Self.valid)")
    }

    /// What a restore left under final names: regular files' bytes and symbolic links' targets.
    enum Node: Equatable { case file(Data), link(String), directory }

    static func snapshot(_ root: URL) throws -> [String: Node] {
        var nodes: [String: Node] = [:]
        let fm = FileManager.default
        guard let walk = fm.enumerator(atPath: root.path) else { return nodes }
        while let relative = walk.nextObject() as? String {
            let url = root.appendingPathComponent(relative)
            let type = try fm.attributesOfItem(atPath: url.path)[.type] as? FileAttributeType
            switch type {
            case .typeSymbolicLink: nodes[relative] = .link(try fm.destinationOfSymbolicLink(atPath: url.path))
            case .typeDirectory: nodes[relative] = .directory
            default: nodes[relative] = .file(try Data(contentsOf: url))
            }
        }
        return nodes
    }

    /// Restores `bytes` into `directory`: every file, extracted under its
    /// backed-up path.
    static func restore(_ bytes: [UInt8], passphrase: String, into directory: URL,
                        options: RestoreOptions = RestoreOptions(parallelism: 2)) throws(QBError) {
        let files = try BackupRestore(source: MemorySource(bytes), passphrase: Secret(passphrase), options: options)
            .readHeader().readVMList()
        try files.process { (file) throws(QBError) -> BackupRestore.Route in
            .stream(InnerArchiveTarget(directory: directory.path,
                                       relocation: try MemberRelocation(within: file, stripComponents: 0)))
        }
    }

    /// The cut points. Every 512-byte boundary where the reader's state
    /// differs: each header block, the first, second and last data block of
    /// each member, each block of end-of-archive padding; inside a member's
    /// data, where every cut meets the same "input ends inside a member",
    /// every `interiorStride`-th boundary (`QB_SWEEP_ALL=1`: every one).
    /// Plus the odd offsets 1, 511, 513 and size − 1.
    static func cuts(_ bytes: [UInt8], interiorStride: Int) -> [Int] {
        var cuts: Set<Int> = [1, 511, 513, bytes.count - 1]
        var p = 0
        while p + 512 <= bytes.count {
            cuts.insert(p)
            if bytes[p..<(p + 512)].allSatisfy({ $0 == 0 }) { p += 512; continue }
            // A header: its size field (octal, offset 124, 12 bytes) says how much data follows.
            let field = bytes[(p + 124)..<(p + 136)].filter { (0x30...0x37).contains($0) }
            let size = Int(String(decoding: field, as: UTF8.self), radix: 8) ?? 0
            let dataStart = p + 512, dataEnd = dataStart + (size + 511) / 512 * 512
            var q = dataStart
            while q < dataEnd {
                let block = (q - dataStart) / 512
                if block < 2 || q + 512 >= dataEnd || block % interiorStride == 0 { cuts.insert(q) }
                q += 512
            }
            p = dataEnd
        }
        return cuts.filter { $0 > 0 && $0 < bytes.count }.sorted() + [0]
    }

    /// Whether `cut` lies in zero bytes that run up to the start of the next
    /// member archive (a 10,240-byte record boundary) or to the end, after
    /// at least one zero block: the reader refuses a stream that ends right
    /// after a member's data, as it does an inner archive (FORMAT.md §8.3).
    static func inMemberPadding(_ bytes: [UInt8], cut: Int) -> Bool {
        var p = cut
        while p < bytes.count, bytes[p] == 0 { p += 1 }
        return (p == bytes.count || p % 10_240 == 0) && cut >= 512 && bytes[(cut - 512)..<cut].allSatisfy { $0 == 0 }
    }

    @Test(arguments: valid)
    func everyBoundaryIsRefusedOrLeavesOnlyCompleteFiles(file: String) throws {
        let fixture = try Manifest.entry(file)
        let passphrase = fixture["passphrase"] as! String
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))

        // The reference: the whole backup, checked against the manifest by sha256sum.
        let whole = try ScratchDirectory()
        do throws(QBError) { try Self.restore(bytes, passphrase: passphrase, into: whole.url) } catch {
            Issue.record("\(file): the whole backup failed: \(error)")
            return
        }
        let problems = try Manifest.mismatches(fixture, under: whole.url) { _, _, path in path }
        #expect(problems.isEmpty, "\(file): \(problems)")
        let reference = try Self.snapshot(whole.url)
        // Several files, so that cuts fall between files as well as inside them
        // (the smallest fixtures hold qubes.xml and two files of one VM).
        #expect(reference.count >= 3)

        var refused = 0, accepted: [Int] = []
        let all = ProcessInfo.processInfo.environment["QB_SWEEP_ALL"] != nil
        let cuts = Self.cuts(bytes, interiorStride: all ? 1 : 16)
        #expect(Set(cuts).isSuperset(of: [0, 512, bytes.count - 512, bytes.count - 1]))
        for cut in cuts {
            let dir = try ScratchDirectory()
            do throws(QBError) {
                try Self.restore(Array(bytes[..<cut]), passphrase: passphrase, into: dir.url)
                accepted.append(cut)
                #expect(Self.inMemberPadding(bytes, cut: cut), "\(file) cut at \(cut): accepted, but it is not at the end of a member archive")
            } catch {
                refused += 1
                #expect(error.kind == .truncated || error.kind == .malformed, "\(file) cut at \(cut): \(error.kind): \(error)")
            }
            for (path, node) in try Self.snapshot(dir.url) {
                #expect(!path.contains(".qb-tmp"), "\(file) cut at \(cut): temporary file left: \(path)")
                if path.contains(".qb-tmp") { continue }
                #expect(reference[path] == node, "\(file) cut at \(cut): \(path) has a final name but not the complete content")
            }
        }
        #expect(refused > 0)
        // The whole backup without its last zero block is a whole backup (§3.2: zero blocks are not required).
        #expect(accepted.contains(bytes.count - 512), "\(file): \(accepted)")
    }
}
