import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// Each bound on an attacker-controlled size, count or work factor: at the
/// limit accepted, one over refused as `.limitExceeded` with a message that
/// names the limit. (Tar limits: TarReaderTests; decoder memory:
/// CompressionTests; the command-line options: LimitOptionTests.)
@Suite struct LimitsTests {
    static let r4 = "version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=20230405T123455-1234\n"

    /// A valid header padded with an ignored key to exactly `size` bytes.
    static func header(size: Int) -> [UInt8] {
        let prefix = r4 + "x-padding="
        return Array(prefix.utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: size - prefix.utf8.count - 1) + [0x0A]
    }

    @Test func backupHeaderUpTo64KiB() throws {
        let atLimit = try BackupHeader(parsing: Self.header(size: BackupHeader.maximumSize))
        #expect(atLimit.version == 4)
        #expect(BackupHeader.maximumSize == 65_536)
        do {
            _ = try BackupHeader(parsing: Self.header(size: BackupHeader.maximumSize + 1))
            Issue.record("a header over the limit was accepted")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.description == "backup-header: header is larger than 65536 bytes")
        }
    }

    /// A `(stdin)= hex` line of exactly `size` bytes with its newline.
    static func digestFile(size: Int) -> [UInt8] {
        Array("(stdin)= ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: size - 10) + [0x0A]
    }

    @Test func hmacFilesUpTo4096Bytes() throws {
        #expect(DigestLine.maximumFileSize == 4096)
        let line = try DigestLine(parsing: Self.digestFile(size: 4096), subject: "x.hmac")
        #expect(line.mac.count == (4096 - 10) / 2)
        do {
            _ = try DigestLine(parsing: Self.digestFile(size: 4097), subject: "x.hmac")
            Issue.record("a 4097-byte .hmac file was parsed")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.description.hasPrefix("x.hmac: hmac file is larger than 4096 bytes"))
        }
    }

    @Test func xmlUpTo1MiBAndDepth64() throws {
        #expect(XMLDocument.maximumSize == 1 << 20 && XMLDocument.maximumDepth == 64)
        let root = Array("<qubes/>".utf8)
        let big = root + [UInt8](repeating: 0x20, count: XMLDocument.maximumSize - root.count)
        #expect(try XMLDocument.parse(big).name == "qubes")
        do {
            _ = try XMLDocument.parse(big + [0x20])
            Issue.record("a document over 1 MiB was parsed")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.message == "XML document is larger than 1048576 bytes")
        }
        func nested(_ depth: Int) -> [UInt8] {
            Array((String(repeating: "<a>", count: depth) + String(repeating: "</a>", count: depth)).utf8)
        }
        #expect(try XMLDocument.parse(nested(64)).name == "a")
        do {
            _ = try XMLDocument.parse(nested(65))
            Issue.record("65 levels were parsed")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.message == "XML nested deeper than 64 levels")
        }
    }

    @Test func chunkNumbersUpToNineDigits() throws {
        let last = try ChunkName(parsing: "vm3/private.img.999999999.enc")
        #expect(last.index == 999_999_999)
        do {
            _ = try ChunkName(parsing: "vm3/private.img.1000000000.enc")
            Issue.record("a ten-digit chunk number was accepted")
        } catch {
            #expect(error.kind == .malformed)
            #expect(error.message.contains("%03d"))
        }
    }

    /// An envelope made by the real scrypt tool.
    static func envelope(logN: Int, r: Int, p: Int) throws -> [UInt8] {
        let dir = try ScratchDirectory()
        try Data("limit".utf8).write(to: dir.file("in"))
        let made = try shell("printf 'k\\n' | scrypt enc -P --logN \(logN) -r \(r) -p \(p) in out", directory: dir.url)
        #expect(made.status == 0, "\(made.stderr)")
        return [UInt8](try Data(contentsOf: dir.file("out")))
    }

    @Test func scryptMemoryUpToTheLimit() throws {
        // 128 · r · (N + p + 2) = 128 · 8 · (2^10 + 3): just over 1 MiB.
        let need = 128 * 8 * ((1 << 10) + 1 + 2)
        let env = try Self.envelope(logN: 10, r: 8, p: 1)
        #expect(try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: ScryptLimits(maximumMemory: need)) == Array("limit".utf8))
        do {
            _ = try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: ScryptLimits(maximumMemory: need - 1))
            Issue.record("\(need) bytes of scrypt memory accepted under a smaller limit")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.description.contains("logN 10, r 8, p 1 need 1.0 MiB (\(need) bytes) of memory, over the limit of \(need - 1) bytes"))
            #expect(error.description.contains("(raise --max-memory to at least \(need), only for a backup you trust)"))
        }
    }

    /// By default the memory limit is what the machine has available, and
    /// a refusal says so, with the option that raises it.
    @Test func scryptMemoryUpToWhatIsAvailable() throws {
        let need = 128 * 8 * ((1 << 10) + 1 + 2)
        let env = try Self.envelope(logN: 10, r: 8, p: 1)
        let enough = SystemResources(cpus: 2, availableMemory: need, memoryBound: .addressSpaceLimit)
        #expect(try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: .affordable(enough)) == Array("limit".utf8))
        let short = SystemResources(cpus: 2, availableMemory: need - 1, memoryBound: .addressSpaceLimit)
        do {
            _ = try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: .affordable(short))
            Issue.record("\(need) bytes of scrypt memory accepted with less available")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.description == "scrypt parameters logN 10, r 8, p 1 need 1.0 MiB (\(need) bytes) of memory; 1.0 MiB available (address-space limit) (free memory, or try anyway with --max-memory \(need), e.g. with swap)")
        }
        #expect(ScryptLimits.affordable(short).maximumMemory == need - 1)
    }

    /// The work N·r·p has a fixed sanity limit, 2^28; p is bounded by it,
    /// not by a limit of its own (scrypt enc writes p > 1 on a fast
    /// machine with little memory).
    @Test func scryptWorkUpToTheLimit() throws {
        #expect(ScryptLimits.defaultMaximumWork == 1 << 28)
        let env = try Self.envelope(logN: 10, r: 1, p: 32)
        #expect(try ScryptFile.decrypt(env, passphrase: Secret("k")) == Array("limit".utf8))
        let work = 1024 * 32
        #expect(try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: ScryptLimits(maximumMemory: 1 << 30, maximumWork: work)) == Array("limit".utf8))
        do {
            _ = try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: ScryptLimits(maximumMemory: 1 << 30, maximumWork: work - 1))
            Issue.record("N·r·p \(work) accepted under a limit of \(work - 1)")
        } catch {
            #expect(error.kind == .limitExceeded)
            #expect(error.description == "scrypt parameters logN 10, r 1, p 32 ask for absurd work: N·r·p over the sanity limit of \(work - 1) (no Qubes backup needs this much; corrupted or hostile backup)")
        }
    }
}
