import Foundation
import Testing
@testable import QubesBackup

private func parse(_ text: String) throws(QBError) -> BackupHeader {
    try BackupHeader(parsing: Array(text.utf8))
}

@Suite struct BackupHeaderTests {
    static let r4 = "version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=20230405T123455-1234\n"
    static let r3 = "version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n"

    @Test func parsesWhatQubesWrites() throws {
        let h4 = try parse(Self.r4)
        #expect(h4.version == 4 && h4.compressionFilter == .gzip && h4.backupID == "20230405T123455-1234" && h4.warnings.isEmpty)
        let h3 = try parse(Self.r3)
        #expect(h3.version == 3 && h3.encrypted && h3.cryptoAlgorithm == "aes-256-cbc" && h3.hmacAlgorithm == "SHA512")
        // R2 headers have no version line and no filter: v2, gzip.
        let h2 = try parse("hmac-algorithm=SHA1\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\n")
        #expect(h2.version == 2 && h2.compressionFilter == .gzip)
        // R4 without compression still writes a filter; it must still be allowed.
        let off = try parse(Self.r4.replacingFirst("compressed=True", "compressed=False"))
        #expect(!off.compressed && off.compressionFilter == nil)
    }

    @Test(arguments: [
        ("python line separators", "version=3\rhmac-algorithm=SHA512\u{0B}crypto-algorithm=aes-256-cbc\u{0C}encrypted=True\u{1C}compressed=False\r\n"),
        ("surrounding white space", "  version=3 \nhmac-algorithm=SHA512\t\ncrypto-algorithm=aes-256-cbc\nencrypted=1\ncompressed=no\n"),
        ("unknown keys ignored unchecked", "version=3\nhmac-algorithm=sha256\ncrypto-algorithm=AES-128-CBC\nencrypted=yes\ncompressed=False\nfuture-key=any thing/at all\n"),
    ])
    func acceptsWhatQubesAccepts(_ name: String, _ text: String) throws {
        let h = try parse(text)
        #expect(h.version == 3, "\(name)")
    }

    @Test(arguments: [
        ("empty line", "version=3\n\nhmac-algorithm=SHA512\n", QBError.Kind.malformed, "invalid backup header line"),
        ("two equals", "version=3=3\n", .malformed, "invalid backup header line"),
        ("space in key", "version =3\n", .malformed, "invalid backup header key"),
        ("non-ascii", "version=3\nhmac-algorithm=SHA512\u{e9}\n", .malformed, "non-ASCII"),
        ("duplicate", "version=3\nversion=3\n", .malformed, "duplicated header line 'version'"),
        ("bad value char", "version=3\nhmac-algorithm=SHA.512\n", .malformed, "invalid backup header value"),
        ("version 5", "version=5\n", .unsupported, "unsupported backup version 5"),
        ("version 1", "version=1\n", .unsupported, "version 1"),
        ("signed version", "version=-3\n", .malformed, "invalid version"),
        ("empty version", "version=\n", .malformed, "invalid version"),
        ("bad boolean", "version=3\nencrypted=maybe\n", .malformed, "invalid boolean"),
        ("missing hmac", "version=3\nencrypted=False\ncompressed=False\n", .malformed, "lacks 'hmac-algorithm'"),
        ("missing crypto", "version=3\nencrypted=True\ncompressed=False\nhmac-algorithm=SHA512\n", .malformed, "lacks 'crypto-algorithm'"),
        ("missing filter", "version=3\nencrypted=False\ncompressed=True\nhmac-algorithm=SHA512\n", .malformed, "lacks 'compression-filter'"),
        ("missing backup-id", "version=4\nencrypted=True\ncompressed=False\nhmac-algorithm=scrypt\n", .malformed, "lacks 'backup-id'"),
        ("program as filter", "version=3\ncompression-filter=bash\n", .unsupported, "Qubes Security Bulletin 51"),
        ("shell as filter", "version=3\ncompression-filter=sh -c id\n", .unsupported, "Qubes Security Bulletin 51"),
        ("filter case", "version=3\ncompression-filter=GZIP\n", .unsupported, "Qubes Security Bulletin 51"),
        ("unused filter still checked", "version=3\nencrypted=False\ncompressed=False\nhmac-algorithm=SHA512\ncompression-filter=lz4\n", .unsupported, "'lz4' is refused"),
        ("unknown cipher", "version=3\ncrypto-algorithm=rot13\n", .unsupported, "crypto-algorithm 'rot13'"),
        ("AEAD cipher", "version=3\ncrypto-algorithm=aes-256-gcm\n", .unsupported, "crypto-algorithm"),
        ("unknown digest", "version=3\nhmac-algorithm=crc32x\n", .unsupported, "hmac-algorithm 'crc32x'"),
        ("v4 with hmac digest", r4.replacingFirst("hmac-algorithm=scrypt", "hmac-algorithm=sha512"), .unsupported, "authenticate with scrypt"),
        ("v3 with scrypt", "version=3\nencrypted=False\ncompressed=False\nhmac-algorithm=scrypt\n", .unsupported, "belongs to version 4"),
        ("dash backup-id", r4.replacingFirst("backup-id=20230405T123455-1234", "backup-id=-rf"), .malformed, "invalid backup-id"),
    ])
    func refuses(_ name: String, _ text: String, _ kind: QBError.Kind, _ message: String) {
        #expect(throws: QBError.self, "\(name)") { try parse(text) }
        do {
            _ = try parse(text)
        } catch {
            #expect(error.kind == kind, "\(name): \(error)")
            #expect(error.description.contains(message), "\(name): \(error)")
        }
    }

    /// What restore derives ahead with: the parser's backup-id when the header
    /// is Qubes', nothing when the claim is absent or unusable.
    @Test func claimedBackupIDAgreesWithTheParser() throws {
        let bytes = Array(Self.r4.utf8)
        #expect(BackupHeader.claimedBackupID(in: bytes) == (try parse(Self.r4)).backupID)
        #expect(BackupHeader.claimedBackupID(in: Array(Self.r4.replacingFirst("\n", "\r\n").utf8)) == "20230405T123455-1234")
        #expect(BackupHeader.claimedBackupID(in: Array(Self.r3.utf8)) == nil)
        #expect(BackupHeader.claimedBackupID(in: Array("backup-id=\nversion=4\n".utf8)) == nil)
        #expect(BackupHeader.claimedBackupID(in: Array("backup-id=a b\n".utf8)) == nil)
        #expect(BackupHeader.claimedBackupID(in: Array(repeating: UInt8(ascii: "a"), count: BackupHeader.maximumSize + 1)) == nil)
    }

    @Test func oversizedHeaderIsRefused() {
        let huge = Array(repeating: UInt8(ascii: "a"), count: BackupHeader.maximumSize + 1)
        #expect { try BackupHeader(parsing: huge) } throws: { ($0 as? QBError)?.kind == .limitExceeded }
    }

    @Test func unusualBackupIDWarns() throws {
        let h = try parse(Self.r4.replacingFirst("20230405T123455-1234", "my-backup"))
        #expect(h.warnings.count == 1)
    }

    @Test func consistencyOfMethodAndVersion() throws {
        let h3 = try parse(Self.r3), h4 = try parse(Self.r4)
        try HeaderAuthentication.checkConsistency(h3, method: .hmac(DigestAlgorithm("sha512")!))
        try HeaderAuthentication.checkConsistency(h4, method: .scrypt)
        #expect(throws: QBError.self) { try HeaderAuthentication.checkConsistency(h3, method: .scrypt) }
        #expect(throws: QBError.self) { try HeaderAuthentication.checkConsistency(h4, method: .hmac(DigestAlgorithm("sha512")!)) }
        #expect(throws: QBError.self) { try HeaderAuthentication.checkConsistency(h3, method: .hmac(DigestAlgorithm("sha256")!)) }
    }
}

@Suite struct DigestLineTests {
    @Test func documentedVector() throws {
        // FORMAT.md §5.1: passphrase `qubes`, the six-line R3 header.
        let mac = try HMACContext.mac(Array(BackupHeaderTests.r3.utf8), algorithm: DigestAlgorithm("sha512")!, key: Secret("qubes"))
        #expect(hexString(mac) == "222e4338452747111640c18c82c50487a5a19270b0abedd486370f3d86b7bfe7e3cd9d968626604a9de26a7a6bc7395798362c955c81b730ca3b6fc9d8057a28")
        let line = try DigestLine(parsing: Array("(stdin)= \(hexString(mac))\n".utf8))
        #expect(line.mac == mac && line.label == "" && line.name == "stdin")
    }

    @Test func labelsAndNames() throws {
        let l = try DigestLine(parsing: Array("HMAC-SHA2-512/256(odd)= name)= 0a0b".utf8))
        #expect(l.label == "SHA2-512/256" && l.name == "odd)= name" && l.mac == [10, 11])
        #expect(HMACVerifier.candidates(for: DigestLine(label: "", name: "stdin", mac: [UInt8](repeating: 0, count: 64)), requested: nil).map(\.name) == ["sha512"])
        #expect(HMACVerifier.candidates(for: DigestLine(label: "", name: "stdin", mac: [UInt8](repeating: 0, count: 20)), requested: nil).map(\.name) == ["sha1"])
    }
}

@Suite struct QubesXMLTests {
    @Test(arguments: [
        ("<!DOCTYPE x [<!ENTITY a \"b\">]><qubes/>", QBError.Kind.unsupported),
        ("<?xml version=\"1.0\"?><!DOCTYPE qubes SYSTEM \"http://example.invalid/x.dtd\"><qubes/>", .unsupported),
        ("<qubes><domains>&xxe;</domains></qubes>", .malformed),
        ("<qubes><domains>", .truncated),
        ("<qubes></qubex>", .malformed),
        ("<qubes a='1' a='2'/>", .malformed),
        ("<qubes/><second/>", .malformed),
        ("<html/>", .unsupported),
    ])
    func hostileOrBrokenXMLIsRefused(_ text: String, _ kind: QBError.Kind) {
        #expect { try QubesXML.parseVMs(Array(text.utf8)) } throws: { ($0 as? QBError)?.kind == kind }
    }

    @Test func boundedDepthAndSize() {
        let deep = String(repeating: "<a>", count: 1000) + String(repeating: "</a>", count: 1000)
        #expect { try XMLDocument.parse(Array(deep.utf8)) } throws: { ($0 as? QBError)?.kind == .limitExceeded }
        let big = [UInt8](repeating: 0x20, count: XMLDocument.maximumSize + 1)
        #expect { try XMLDocument.parse(big) } throws: { ($0 as? QBError)?.kind == .limitExceeded }
    }

    @Test func core2AndCore3() throws {
        let core2 = """
            <?xml version='1.0' encoding='UTF-8'?>
            <QubesVmCollection><QubesAdminVm qid="0" name="dom0" backup_content="True" backup_path="dom0-home/user"/>\
            <QubesTemplateVm name="fedora" qid="1" template_qid="none" label="black" backup_content="True" backup_path="vm-templates/fedora" backup_size="10"/>\
            <QubesAppVm name="w&amp;k" qid="2" template_qid="1" label="green" backup_content="True" backup_path="vm2"/>\
            <QubesDisposableVm name="ignored" qid="3"/></QubesVmCollection>
            """
        let vms2 = try QubesXML.parseVMs(Array(core2.utf8))
        #expect(vms2.map(\.name) == ["dom0", "fedora", "w&k"])
        #expect(vms2.map(\.vmClass) == ["AdminVM", "TemplateVM", "AppVM"])
        #expect(vms2.map(\.subdir) == ["dom0-home/", "vm-templates/fedora/", "vm2/"])
        #expect(vms2[2].template == "fedora" && vms2[1].size == 10)
        let core3 = """
            <qubes><labels><label id="label-4" color="0x73d216">green</label></labels><domains>\
            <domain class="AdminVM"><properties/><features><feature name="backup-content">1</feature><feature name="backup-path">dom0-home/user</feature></features></domain>\
            <domain class="AppVM"><properties><property name="name">work</property><property name="label">label-4</property></properties>\
            <features><feature name="backup-content">1</feature><feature name="backup-path">vm3/</feature></features></domain>\
            <domain class="AppVM"><properties><property name="name">off</property><property name="label">red</property></properties><features><feature name="backup-content"/></features></domain>\
            </domains></qubes>
            """
        let vms3 = try QubesXML.parseVMs(Array(core3.utf8))
        #expect(vms3.map(\.name) == ["dom0", "work", "off"])
        #expect(vms3.map(\.included) == [true, true, false])
        #expect(vms3.map(\.label) == [nil, "green", "red"])
        #expect(vms3[0].subdir == "dom0-home/")
        // Without volume-config the class says which images there are.
        #expect(vms3.map(\.volumes.count) == [0, 1, 0])
        // R3 stores a template as its whole directory: no image of its own.
        #expect(vms2.map { $0.volumes.map(\.name) } == [[], [], ["private"]])
    }

    /// What each VM must bring, against what came: a VM cut between its
    /// images, one with no file at all, dom0's home when qubes.xml lists it.
    @Test func completenessNamesWhatIsMissing() {
        func vm(_ name: String, _ vmClass: String, _ subdir: String, _ volumes: [String]) -> VMEntry {
            VMEntry(name: name, vmClass: vmClass, subdir: subdir, size: nil, template: nil, label: nil, included: true,
                    volumes: volumes.map { VMVolume(name: $0) })
        }
        let vms = [vm("dom0", "AdminVM", "dom0-home/", []), vm("tpl", "TemplateVM", "vm2/", ["root", "private"]),
                   vm("work", "AppVM", "vm3/", ["private"]), vm("late", "AppVM", "vm4/", ["private"])]
        let files = ["vm2/root.img", "vm3/private.img", "vm3/firewall.xml"]
        #expect(BackupCompleteness.missing(vms: vms, files: files) == [
            "truncated backup: VM 'tpl' (vm2/) has no private.img",
            "truncated backup: VM 'late' (vm4/) has no files, though qubes.xml lists it",
        ])
        #expect(BackupCompleteness.missing(vms: vms, files: files + ["vm2/private.img", "vm4/private.img"]).isEmpty)
        #expect(BackupCompleteness.lacksDom0Home(vms: vms, files: files))
        #expect(!BackupCompleteness.lacksDom0Home(vms: vms, files: files + ["dom0-home/user"]))
        #expect(!BackupCompleteness.lacksDom0Home(vms: Array(vms.dropFirst()), files: files))
    }

    /// R4 lists the volumes it saves on stop, with their sizes: those, and
    /// only those, are in the backup as NAME.img.
    @Test func volumeConfigSaysWhichImagesAreBackedUp() throws {
        let xml = """
            <qubes><labels/><domains>            <domain class="TemplateVM"><properties><property name="name">fedora</property></properties>            <features><feature name="backup-content">True</feature><feature name="backup-path">vm1/</feature></features>            <volume-config><volume name="root" pool="lvm" revisions_to_keep="1" rw="True" save_on_stop="True" size="10737418240"/>            <volume name="private" pool="lvm" rw="True" save_on_stop="True" size="2147483648"/>            <volume name="volatile" pool="lvm" rw="True" size="10737418240"/>            <volume name="kernel" pool="linux-kernel" rw="False" size="0"/></volume-config></domain>            </domains></qubes>
            """
        let vms = try QubesXML.parseVMs(Array(xml.utf8))
        #expect(vms[0].volumes == [VMVolume(name: "root", size: 10_737_418_240), VMVolume(name: "private", size: 2_147_483_648)])
    }
}

extension String {
    func replacingFirst(_ a: String, _ b: String) -> String {
        guard let r = range(of: a) else { return self }
        return replacingCharacters(in: r, with: b)
    }
}
