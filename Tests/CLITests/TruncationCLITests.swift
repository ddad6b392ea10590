import Foundation
import Testing
import QBTestSupport

/// Cut backups through the built tools: qb-restore at every 512-byte
/// boundary of one small fixture and at spread points of the others, the
/// small-tool pipelines of one file, and qb-untar | qb-header on the header.
/// Never success where the format could tell, a one-line error per tool,
/// nothing under a final name that is not complete. (Every boundary of every
/// fixture is swept in process by TruncationSweepTests.)
@Suite struct TruncationCLITests {
    static let valid: [String] = Manifest.files { $0.valid }

    /// The parameterized tests below run one case per valid fixture: none
    /// when the manifest does not load, which must fail, not pass.
    @Test func hasItsCases() throws {
        _ = try Manifest.loaded.get()
        #expect(Self.valid.count >= 11, "\(Self.valid)")
    }

    /// One outer member: its name and the byte ranges of header and data.
    struct Member { var name: String; var header: Int; var dataEnd: Int }

    /// The outer stream's members, read with a few lines of tar (ustar name
    /// field, octal size field) so the test does not trust the code it tests.
    static func members(_ bytes: [UInt8]) -> [Member] {
        var members: [Member] = []
        var p = 0
        while p + 512 <= bytes.count {
            if bytes[p..<(p + 512)].allSatisfy({ $0 == 0 }) { p += 512; continue }
            let name = String(decoding: bytes[p..<(p + 100)].prefix { $0 != 0 }, as: UTF8.self)
            let field = bytes[(p + 124)..<(p + 136)].filter { (0x30...0x37).contains($0) }
            let size = Int(String(decoding: field, as: UTF8.self), radix: 8) ?? 0
            let end = p + 512 + (size + 511) / 512 * 512
            if !name.contains("PaxHeaders") { members.append(Member(name: name, header: p, dataEnd: end)) }
            p = end
        }
        return members
    }

    /// Whether `cut` lies in zero bytes running to the next 10,240-byte
    /// member archive or the end, after at least one zero block (see
    /// TruncationSweepTests).
    static func inMemberPadding(_ bytes: [UInt8], cut: Int) -> Bool {
        var p = cut
        while p < bytes.count, bytes[p] == 0 { p += 1 }
        return (p == bytes.count || p % 10_240 == 0) && cut >= 512 && bytes[(cut - 512)..<cut].allSatisfy { $0 == 0 }
    }

    /// What the tools wrote: regular files' bytes and link targets, by relative path.
    static func snapshot(_ root: URL) throws -> [String: Data] {
        var nodes: [String: Data] = [:]
        let fm = FileManager.default
        guard let walk = fm.enumerator(atPath: root.path) else { return nodes }
        while let relative = walk.nextObject() as? String {
            let path = root.appendingPathComponent(relative).path
            switch try fm.attributesOfItem(atPath: path)[.type] as? FileAttributeType {
            case .typeSymbolicLink: nodes[relative] = Data(try fm.destinationOfSymbolicLink(atPath: path).utf8)
            case .typeDirectory: continue
            default: nodes[relative] = try Data(contentsOf: URL(fileURLWithPath: path))
            }
        }
        return nodes
    }

    /// Every error line comes from a qb tool and names it, and no more lines
    /// than the tools that ran (`tools`): each says one line at most.
    /// (qb-restore names each VM that a cut between files left incomplete
    /// on a line of its own: those lines are counted apart.)
    static func oneLinePerTool(_ stderr: String, tools: Int = 1) -> Bool {
        let lines = stderr.split(separator: "\n").filter { !$0.contains(": warning: ") }
        let perVM = lines.filter { $0.contains(": truncated backup: VM '") }.count
        return !lines.isEmpty && lines.count - perVM <= tools && lines.allSatisfy { $0.hasPrefix("qb-") && $0.contains(": ") }
    }

    /// The member whose data (not its header) the cut lies in, if any.
    static func memberCut(_ members: [Member], at cut: Int) -> Member? {
        members.first { $0.header + 512 < cut && cut < $0.dataEnd }
    }

    /// ~`count` cut points spread over a file, plus the odd offsets.
    static func spread(_ size: Int, count: Int) -> [Int] {
        let step = max(512, size / count / 512 * 512)
        return Array(Set(Array(stride(from: 0, to: size, by: step)) + [1, 511, 513, size - 1])).sorted()
    }

    static let restoreCuts: [(String, [Int])] = valid.map { file in
        let size = (try? FileManager.default.attributesOfItem(atPath: Repo.fixture(file).path)[.size] as? Int) ?? 0
        if file == "v4-zstd.qubes" { return (file, Array(stride(from: 0, to: size, by: 512)) + [1, 511, 513, size - 1]) }
        return (file, spread(size, count: 20))
    }

    @Test(arguments: restoreCuts.map(\.0))
    func qbRestoreRefusesCutBackups(file: String) throws {
        let fixture = try Manifest.entry(file)
        let pass = fixture["passphrase"] as! String
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let work = try ScratchDirectory()
        try FileManager.default.createDirectory(at: work.file("whole"), withIntermediateDirectories: true)
        let whole = try run("qb-restore", ["--dom0-home", "--passphrase", "env:P", "-C", "whole", Repo.fixture(file).path],
                            environment: ["P": pass], directory: work.url)
        #expect(whole.status == 0, "\(whole.stderr)")
        let reference = try Self.snapshot(work.file("whole"))
        let members = Self.members(bytes)
        var refused = 0
        for cut in Self.restoreCuts.first(where: { $0.0 == file })!.1 {
            let dir = try ScratchDirectory()
            try Data(bytes[..<cut]).write(to: dir.file("cut.qubes"))
            try FileManager.default.createDirectory(at: dir.file("target"), withIntermediateDirectories: true)
            let r = try run("qb-restore", ["--dom0-home", "--passphrase", "env:P", "-C", "target", "cut.qubes"],
                            environment: ["P": pass], directory: dir.url)
            if r.status == 0 {
                // Only a cut between two backed-up files can pass for a whole backup (of fewer files).
                #expect(Self.inMemberPadding(bytes, cut: cut), "\(file) cut at \(cut) accepted")
                let last = members.last { $0.header < cut }
                #expect(last.map { $0.name.hasSuffix(".hmac") || $0.name.hasSuffix(".enc") } ?? false, "\(file) cut at \(cut)")
            } else {
                refused += 1
                #expect(r.status == 3, "\(file) cut at \(cut): \(r.status) \(r.stderr)")
                #expect(Self.oneLinePerTool(r.stderr), "\(file) cut at \(cut): \(r.stderr)")
                let words = ["truncated", "ends before", "the stream ends after it", "no files"]
                #expect(words.contains { r.stderr.contains($0) }, "\(file) cut at \(cut): \(r.stderr)")
            }
            #expect(dir.listing().allSatisfy { ["cut.qubes", "target"].contains($0) || $0.hasPrefix("target/") })
            for (path, content) in try Self.snapshot(dir.file("target")) {
                #expect(!path.contains(".qb-tmp"), "\(file) cut at \(cut): \(path) left behind")
                #expect(path.contains(".qb-tmp") || reference[path] == content,
                        "\(file) cut at \(cut): \(path) has its final name but not its whole content")
            }
        }
        #expect(refused > 0)
    }

    /// Cuts between two backed-up files leave no broken chunk: qubes.xml's
    /// list of each VM's volumes is what must catch them. Every cut at a
    /// member archive's boundary (each is padded to 10,240 bytes) that loses
    /// any chunk of a volume image is refused by --verify-only (status 3,
    /// a line naming the VM and the image); only cuts that lose files
    /// qubes.xml cannot tell about (a trailing firewall.xml, a dom0 home it
    /// does not list) may pass.
    @Test(arguments: ["v3-aes-gzip.qubes", "v4-gzip.qubes", "v3-fs-gzip.qubes", "v4-fs-gzip.qubes"])
    func cutsBetweenFilesThatLoseAVolumeAreRefused(file: String) throws {
        let pass = try Manifest.entry(file)["passphrase"] as! String
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let members = Self.members(bytes)
        let dir = try ScratchDirectory()
        var refusedWithALine = 0
        for cut in stride(from: 10_240, to: bytes.count, by: 10_240) {
            try Data(bytes[..<cut]).write(to: dir.file("cut.qubes"))
            let r = try run("qb-restore", ["--verify-only", "--passphrase", "env:P", "cut.qubes"], environment: ["P": pass], directory: dir.url)
            let kept = Set(members.filter { $0.dataEnd <= cut }.map(\.name))
            let lost = members.map(\.name).filter { !kept.contains($0) }
            let lostImage = lost.contains { $0.range(of: #"\.img\.[0-9]{3}"#, options: .regularExpression) != nil }
            if lostImage {
                #expect(r.status == 3, "\(file) cut at \(cut) (lost \(lost)): \(r.status) \(r.stderr)")
                #expect(!r.stdoutText.contains(": OK"), "\(file) cut at \(cut)")
                if r.stderr.contains("truncated backup: VM '") {
                    refusedWithALine += 1
                    let line = try #require(r.stderr.split(separator: "\n").first { $0.contains("truncated backup: VM '") })
                    #expect(line.range(of: #"^qb-restore: truncated backup: VM '[a-z]+' \(vm[0-9]+/\) has no ((private|root)\.img( and root\.img)?|files, though qubes.xml lists it)$"#,
                                       options: .regularExpression) != nil, "\(line)")
                }
            } else if r.status != 0 {
                // Cut inside a member: refused at that member, as before.
                #expect(r.status == 3, "\(file) cut at \(cut): \(r.stderr)")
            }
        }
        // Some cuts fall between a VM's images (before its root.img, or its private.img).
        #expect(refusedWithALine > 0, "\(file)")
    }

    /// The v3 manual-procedure pipeline of one image, fed a backup cut inside
    /// that image's chunks: every cut fails the pipeline, names the member,
    /// and leaves no private.img.
    @Test func v3PipelineRefusesCutChunks() throws {
        try Self.pipelineRefusesCutChunks("v3-aes-gzip.qubes", chunks: 4, tools: 5, environment: ["P": "qubes"], stages: """
            qb-hmac --check --passphrase env:P | qb-decrypt --passphrase env:P
            """)
    }

    /// The same for a version 4 backup, whose chunks qb-decrypt --chunks opens.
    @Test func v4PipelineRefusesCutChunks() throws {
        let fixture = try Manifest.entry("v4-gzip.qubes")
        try Self.pipelineRefusesCutChunks("v4-gzip.qubes", chunks: nil, tools: 4,
                                          environment: ["P": fixture["passphrase"] as! String, "ID": fixture["backup_id"] as! String],
                                          stages: #"qb-decrypt --chunks --backup-id "$ID" --passphrase env:P"#)
    }

    /// Cuts `file` at about 20 places inside vm3/private.img's chunks and
    /// runs `qb-untar -i | stages | qb-decompress | qb-untar -x` on each.
    static func pipelineRefusesCutChunks(_ file: String, chunks: Int?, tools: Int, environment: [String: String],
                                         stages: String) throws {
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let members = Self.members(bytes).filter { $0.name.hasPrefix("vm3/private.img.") }
        if let chunks { #expect(members.count == chunks, "\(members.map(\.name))") } else { #expect(members.count >= 2) }
        let first = members.first!.header, last = members.last!.dataEnd
        let cuts = Array(Set(stride(from: first, to: last, by: max(512, (last - first) / 20 / 512 * 512)).map { $0 } + [first + 1, last - 1, last - 512])).sorted()
        for cut in cuts {
            let dir = try ScratchDirectory()
            try Data(bytes[..<cut]).write(to: dir.file("cut.qubes"))
            let r = try shell("""
                mkdir out && qb-untar -i --tar 'vm3/private.img.[0-9]*' < cut.qubes \\
                  | \(stages) | qb-decompress -f gzip \\
                  | qb-untar -x --within vm3/private.img --strip-components 1 -C out
                """, environment: environment, directory: dir.url)
            #expect(r.status != 0, "cut at \(cut) accepted")
            #expect(Self.oneLinePerTool(r.stderr, tools: tools), "cut at \(cut): \(r.stderr)")
            // A cut inside a header leaves no name to give; inside data, the member is named.
            if Self.memberCut(members, at: cut) != nil {
                #expect(r.stderr.contains("vm3/private.img"), "cut at \(cut): the member is not named: \(r.stderr)")
            }
            #expect(dir.listing() == ["cut.qubes", "out"], "cut at \(cut): \(dir.listing())")
        }
    }

    /// The header and its .hmac at every boundary of their two member
    /// archives: qb-untar refuses the cut member, or qb-header --verify
    /// refuses what is there; only cuts after both are whole pass.
    @Test(arguments: ["v3-aes-gzip.qubes", "v4-gzip.qubes"])
    func headerStepsRefuseCutHeaders(file: String) throws {
        let pass = try Manifest.entry(file)["passphrase"] as! String
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let hmac = Self.members(bytes).first { $0.name == "backup-header.hmac" }!
        for cut in Array(stride(from: 0, to: hmac.dataEnd + 1024, by: 512)) + [1, 511, 513] {
            let dir = try ScratchDirectory()
            try Data(bytes[..<cut]).write(to: dir.file("cut.qubes"))
            let r = try shell("""
                set -e
                qb-untar -i -x -f cut.qubes backup-header backup-header.hmac
                qb-header --verify backup-header.hmac --passphrase env:P backup-header
                """, environment: ["P": pass], directory: dir.url)
            // The outer reader wants one zero block after the last member (FORMAT.md §3.2, §8.3).
            if cut >= hmac.dataEnd + 512 {
                #expect(r.status == 0, "cut at \(cut): \(r.stderr)")
                continue
            }
            // 3: the cut member is truncated; 2: a member asked for is not in the archive at all.
            #expect(r.status == 3 || (r.status == 2 && r.stderr.contains("not found in archive")), "cut at \(cut): \(r.status) \(r.stderr)")
            #expect(Self.oneLinePerTool(r.stderr), "cut at \(cut): \(r.stderr)")
            #expect(!dir.listing().contains { $0.contains(".qb-tmp") }, "cut at \(cut): \(dir.listing())")
            // Whatever qb-untar wrote is whole: the header or .hmac member whose data ended before the cut.
            for name in dir.listing() where name != "cut.qubes" {
                let member = Self.members(bytes).first { $0.name == name }
                #expect(member.map { $0.dataEnd <= cut } ?? false, "cut at \(cut): \(name) written but cut")
            }
        }
    }
}
