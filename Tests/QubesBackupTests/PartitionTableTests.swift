import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// Partition tables written by sfdisk (util-linux) on plain files, read back
/// by our parser and compared with what `sfdisk -J` itself reports.
@Suite struct PartitionTableTests {
    /// The Qubes root.img layout: BIOS boot, EFI system, root filesystem.
    static let qubesGPT = """
        label: gpt
        size=1M, type=21686148-6449-6E6F-744E-656564454649, name="BIOS boot"
        size=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"
        type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="Root filesystem"

        """

    /// A primary, an extended partition filling the rest, three logical ones.
    static let dosLayout = """
        label: dos
        ,8M,83
        ,,E
        ,4M,82
        ,8M,8e
        ,,83

        """

    /// A 64 MiB file partitioned by sfdisk from `script`.
    static func makeImage(_ scratch: ScratchDirectory, _ script: String, size: String = "64M") throws -> URL {
        let image = scratch.file("disk.img")
        #expect(try shell("truncate -s \(size) '\(image.path)'").status == 0)
        let r = try run("sfdisk", ["-q", image.path], stdin: Data(script.utf8))
        #expect(r.status == 0, "\(r.stderr)")
        return image
    }

    struct Reported {
        var number: Int, start: Int64, size: Int64, type: String, name: String
    }

    /// What sfdisk says about the image: partitions in bytes, by number.
    static func sfdiskReport(_ image: URL) throws -> (label: String, partitions: [Reported]) {
        let r = try run("sfdisk", ["-J", image.path])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
        let table = json["partitiontable"] as! [String: Any]
        let sectorSize = Int64(table["sectorsize"] as! Int)
        let partitions = (table["partitions"] as! [[String: Any]]).map { p in
            let node = p["node"] as! String
            let number = Int(String(node.reversed().prefix { $0.isNumber }.reversed()))!
            return Reported(number: number, start: Int64(p["start"] as! Int) * sectorSize,
                            size: Int64(p["size"] as! Int) * sectorSize,
                            type: p["type"] as! String, name: p["name"] as? String ?? "")
        }
        return (table["label"] as! String, partitions.sorted { $0.number < $1.number })
    }

    static func compare(_ table: PartitionTable, _ reported: [Reported], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(table.partitions.map(\.number) == reported.map(\.number), sourceLocation: sourceLocation)
        for (ours, theirs) in zip(table.partitions, reported) {
            #expect(ours.start == theirs.start, "partition \(theirs.number) start", sourceLocation: sourceLocation)
            #expect(ours.size == theirs.size, "partition \(theirs.number) size", sourceLocation: sourceLocation)
            #expect(ours.name == theirs.name, "partition \(theirs.number) name", sourceLocation: sourceLocation)
            if table.scheme == .gpt {
                #expect(ours.type == theirs.type, "partition \(theirs.number) type", sourceLocation: sourceLocation)
            } else {
                // sfdisk prints a dos type as bare hex ("5", "8e").
                #expect(ours.type.hasPrefix("0x"), sourceLocation: sourceLocation)
                #expect(UInt8(ours.type.dropFirst(2), radix: 16) == UInt8(theirs.type, radix: 16),
                        "partition \(theirs.number) type", sourceLocation: sourceLocation)
            }
        }
    }

    /// Overwrites one byte of `image` at `offset` with its complement.
    static func flip(_ image: URL, at offset: Int64) throws {
        let handle = try FileHandle(forUpdating: image)
        try handle.seek(toOffset: UInt64(offset))
        let old = try handle.read(upToCount: 1)![0]
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [~old])
        try handle.close()
    }

    static func read(_ image: URL) throws -> PartitionTable {
        try PartitionTable.read(from: try ImageFile(path: image.path))
    }

    @Test func gptWithThreePartitionsMatchesSfdisk() throws {
        let scratch = try ScratchDirectory()
        let image = try Self.makeImage(scratch, Self.qubesGPT)
        let report = try Self.sfdiskReport(image)
        #expect(report.label == "gpt")
        #expect(report.partitions.count == 3)
        let table = try Self.read(image)
        #expect(table.scheme == .gpt)
        #expect(table.sectorSize == 512)
        #expect(table.warnings.isEmpty)
        Self.compare(table, report.partitions)
        #expect(table.partitions.map(\.typeName) == ["BIOS boot", "EFI System", "Linux filesystem"])
        // The root filesystem runs to the last usable sector (the backup GPT follows).
        #expect(table.partitions.last?.number == 3)
    }

    @Test func corruptedPrimaryHeaderFallsBackToTheBackup() throws {
        let scratch = try ScratchDirectory()
        let image = try Self.makeImage(scratch, Self.qubesGPT)
        let report = try Self.sfdiskReport(image)
        try Self.flip(image, at: 512 + 40)  // the first usable LBA, inside the header checksum
        let table = try Self.read(image)
        #expect(table.scheme == .gpt)
        Self.compare(table, report.partitions)
        let lastLBA = 64 * 1024 * 1024 / 512 - 1
        #expect(table.warnings == ["primary GPT header: header checksum mismatch at LBA 1; used the backup header at LBA \(lastLBA)"])
    }

    @Test func corruptedEntryArrayFallsBackToTheBackup() throws {
        let scratch = try ScratchDirectory()
        let image = try Self.makeImage(scratch, Self.qubesGPT)
        let report = try Self.sfdiskReport(image)
        try Self.flip(image, at: 1024 + 56)  // first letter of partition 1's name
        let table = try Self.read(image)
        Self.compare(table, report.partitions)
        #expect(table.partitions.first?.name == "BIOS boot")
        #expect(table.warnings.count == 1)
        #expect(table.warnings.first?.hasPrefix("primary GPT header: partition entry array checksum mismatch") == true)
    }

    @Test func bothHeadersDamagedIsMalformed() throws {
        let scratch = try ScratchDirectory()
        let image = try Self.makeImage(scratch, Self.qubesGPT)
        try Self.flip(image, at: 512 + 40)
        try Self.flip(image, at: 64 * 1024 * 1024 - 512 + 40)
        let error = #expect(throws: QBError.self) { try Self.read(image) }
        #expect(error?.kind == .malformed)
        #expect(error?.message == "GPT header and its backup are both damaged")
        #expect(error?.hint?.contains("header checksum mismatch") == true)
    }

    @Test func dosTableWithLogicalPartitionsMatchesSfdisk() throws {
        let scratch = try ScratchDirectory()
        let image = try Self.makeImage(scratch, Self.dosLayout)
        let report = try Self.sfdiskReport(image)
        #expect(report.label == "dos")
        #expect(report.partitions.map(\.number) == [1, 2, 5, 6, 7])
        let table = try Self.read(image)
        #expect(table.scheme == .mbr)
        #expect(table.warnings.isEmpty)
        Self.compare(table, report.partitions)
        #expect(table.partitions.map(\.typeName) == ["Linux", "Extended", "Linux swap", "Linux LVM", "Linux"])
    }

    @Test func zeroedImageHasNoTable() throws {
        let scratch = try ScratchDirectory()
        let image = scratch.file("zeros.img")
        #expect(try shell("truncate -s 4M '\(image.path)'").status == 0)
        let table = try Self.read(image)
        #expect(table.scheme == .none)
        #expect(table.partitions.isEmpty)
        #expect(table.warnings.isEmpty)
    }

    @Test func bareExt4FilesystemHasNoTable() throws {
        guard haveProgram("mkfs.ext4") || FileManager.default.fileExists(atPath: "/usr/sbin/mkfs.ext4") else { return }
        let scratch = try ScratchDirectory()
        let image = scratch.file("private.img")
        let r = try shell("truncate -s 16M '\(image.path)' && PATH=$PATH:/usr/sbin:/sbin mkfs.ext4 -q -F '\(image.path)'")
        #expect(r.status == 0, "\(r.stderr)")
        let table = try Self.read(image)
        #expect(table.scheme == .none)
        #expect(table.partitions.isEmpty)
    }

    @Test func truncatedImageNamesThePartition() throws {
        let scratch = try ScratchDirectory()
        let image = try Self.makeImage(scratch, Self.qubesGPT)
        #expect(try shell("truncate -s 40M '\(image.path)'").status == 0)
        let error = #expect(throws: QBError.self) { try Self.read(image) }
        #expect(error?.kind == .truncated)
        #expect(error?.message.hasPrefix("partition 3 ") == true, "\(String(describing: error))")
        #expect(error?.message.contains("runs past the end of the image") == true)
    }

    @Test func extendedChainThatLoopsIsRefused() throws {
        // Hand-made: sfdisk will not write a loop. Extended partition at
        // sector 2048 whose EBR links to itself.
        var disk = [UInt8](repeating: 0, count: 4 * 1024 * 1024)
        func entry(_ sector: Int, _ slot: Int, type: UInt8, first: UInt32, count: UInt32) {
            let at = sector * 512 + 446 + 16 * slot
            disk[at + 4] = type
            for i in 0..<4 {
                disk[at + 8 + i] = UInt8(truncatingIfNeeded: first >> (8 * UInt32(i)))
                disk[at + 12 + i] = UInt8(truncatingIfNeeded: count >> (8 * UInt32(i)))
            }
            disk[sector * 512 + 510] = 0x55
            disk[sector * 512 + 511] = 0xAA
        }
        entry(0, 0, type: 0x05, first: 2048, count: 4096)
        entry(2048, 0, type: 0x83, first: 64, count: 100)
        entry(2048, 1, type: 0x05, first: 0, count: 200)
        let scratch = try ScratchDirectory()
        let image = scratch.file("loop.img")
        try Data(disk).write(to: image)
        let error = #expect(throws: QBError.self) { try Self.read(image) }
        #expect(error?.kind == .malformed)
        #expect(error?.message == "the extended partition's chain of logical partitions loops back to sector 2048")
    }
}
