/// One partition of a disk image, located in bytes so a caller can open an
/// `ImageWindow` on it without knowing the table's sector size.
public struct Partition: Sendable, Equatable {
    /// 1-based, as Linux numbers them (sda3 = 3); MBR logical partitions from 5.
    public var number: Int
    /// Bytes from the start of the image.
    public var start: Int64
    /// Bytes.
    public var size: Int64
    /// GPT: the type GUID in canonical upper-case text; MBR: `0x83` style.
    public var type: String
    /// A short name for the well-known types, for messages.
    public var typeName: String?
    /// The GPT partition name; "" for MBR.
    public var name: String

    public init(number: Int, start: Int64, size: Int64, type: String, typeName: String?, name: String) {
        self.number = number
        self.start = start
        self.size = size
        self.type = type
        self.typeName = typeName
        self.name = name
    }
}

public enum PartitionScheme: Sendable, Equatable { case none, mbr, gpt }

/// The partition table of a disk image (a Qubes `root.img` is a GPT disk;
/// `private.img` is a bare filesystem). Reading it only reports: whether an
/// unpartitioned filesystem or a partition is wanted is the caller's call.
public struct PartitionTable: Sendable {
    public var scheme: PartitionScheme
    public var partitions: [Partition]
    /// 512, or 4096 for a GPT disk written with 4 KiB logical sectors.
    public var sectorSize: Int
    /// Problems met but worked around, one line each.
    public var warnings: [String]

    public init(scheme: PartitionScheme, partitions: [Partition], sectorSize: Int, warnings: [String]) {
        self.scheme = scheme
        self.partitions = partitions
        self.sectorSize = sectorSize
        self.warnings = warnings
    }

    /// Hostile tables cannot make the reader allocate or loop without bound.
    public static let maxGPTEntries = 1024
    public static let maxGPTEntrySize = 4096
    public static let maxLogicalPartitions = 128

    public static func read(from image: ImageBytes) throws(QBError) -> PartitionTable {
        guard image.size >= 512 else {
            return PartitionTable(scheme: .none, partitions: [], sectorSize: 512, warnings: [])
        }
        let mbr = try image.read(at: 0, count: 512)
        guard mbr[510] == 0x55, mbr[511] == 0xAA else {
            // A GPT disk whose protective MBR was wiped is still a GPT disk; a
            // bare ext2/3/4 filesystem has zeros where the header would be.
            if let table = try? GPTReader(image: image).read(warnings: ["sector 0 has no boot signature; read the GPT without a protective MBR"]),
               !table.warnings.contains(where: { $0.hasPrefix("primary GPT header") }) {
                return table
            }
            return PartitionTable(scheme: .none, partitions: [], sectorSize: 512, warnings: [])
        }
        let entries = (0..<4).map { MBREntry(mbr, at: 446 + 16 * $0) }
        // Linux's test: a volume boot record (FAT, NTFS) also ends in 55 AA,
        // but its bytes 446... are boot code, whose status bytes are rarely
        // only 0x00 or 0x80.
        guard entries.allSatisfy({ $0.status == 0x00 || $0.status == 0x80 }) else {
            return PartitionTable(scheme: .none, partitions: [], sectorSize: 512,
                                  warnings: ["sector 0 has a boot signature but no partition table (bad status bytes)"])
        }
        let used = entries.filter { !$0.isEmpty }
        if used.contains(where: { $0.type == 0xEE }) {
            var warnings: [String] = []
            if used.count > 1 { warnings.append("hybrid MBR (a GPT-protective entry beside others); used the GPT") }
            return try GPTReader(image: image).read(warnings: warnings)
        }
        return try MBRReader(image: image).read(entries)
    }
}

// MARK: - MBR

private struct MBREntry {
    var status: UInt8
    var type: UInt8
    var firstSector: UInt32
    var sectors: UInt32

    init(_ sector: [UInt8], at offset: Int) {
        status = sector[offset]
        type = sector[offset + 4]
        firstSector = sector.le32(offset + 8)
        sectors = sector.le32(offset + 12)
    }

    var isEmpty: Bool { type == 0 || sectors == 0 }
    var isExtended: Bool { type == 0x05 || type == 0x0F || type == 0x85 }
}

private struct MBRReader {
    let image: ImageBytes
    let sectorSize: Int64 = 512

    func read(_ entries: [MBREntry]) throws(QBError) -> PartitionTable {
        var partitions: [Partition] = []
        var nextLogical = 5
        var ebrsVisited = 0
        for (index, entry) in entries.enumerated() where !entry.isEmpty {
            let partition = try place(entry, number: index + 1, base: 0)
            partitions.append(partition)
            if entry.isExtended {
                try followChain(of: partition, base: UInt64(entry.firstSector), into: &partitions,
                                nextNumber: &nextLogical, ebrsVisited: &ebrsVisited)
            }
        }
        return PartitionTable(scheme: .mbr, partitions: partitions, sectorSize: 512, warnings: [])
    }

    /// An MBR entry's sectors are 32-bit, so the byte values fit in Int64
    /// whatever the base; only the image's size can be exceeded.
    private func place(_ entry: MBREntry, number: Int, base: UInt64) throws(QBError) -> Partition {
        let first = base + UInt64(entry.firstSector)
        let start = Int64(first) * sectorSize
        let size = Int64(entry.sectors) * sectorSize
        guard start <= image.size, size <= image.size - start else {
            throw QBError(.malformed, "partition \(number) (\(size) bytes at offset \(start)) lies outside the image (\(image.size) bytes)",
                          subject: image.path, hint: "the table is damaged or the image is truncated")
        }
        let name = mbrTypeNames[entry.type]
        return Partition(number: number, start: start, size: size, type: "0x" + hex(entry.type),
                         typeName: name, name: "")
    }

    /// Logical partitions: each EBR holds one partition, relative to the EBR
    /// itself, and a link to the next EBR, relative to the extended
    /// partition's start.
    private func followChain(of extended: Partition, base: UInt64, into partitions: inout [Partition],
                             nextNumber: inout Int, ebrsVisited: inout Int) throws(QBError) {
        var visited: Set<UInt64> = []
        var ebr = base
        while true {
            guard visited.insert(ebr).inserted else {
                throw QBError(.malformed, "the extended partition's chain of logical partitions loops back to sector \(ebr)",
                              subject: image.path)
            }
            ebrsVisited += 1
            guard ebrsVisited <= PartitionTable.maxLogicalPartitions else {
                throw QBError(.limitExceeded, "more than \(PartitionTable.maxLogicalPartitions) logical partitions",
                              subject: image.path)
            }
            let offset = Int64(ebr) * sectorSize
            guard offset <= image.size - sectorSize else {
                throw QBError(.truncated, "the extended partition's chain points to sector \(ebr), past the end of the image",
                              subject: image.path)
            }
            let sector = try image.read(at: offset, count: 512)
            guard sector[510] == 0x55, sector[511] == 0xAA else {
                throw QBError(.malformed, "the extended boot record at sector \(ebr) has no boot signature", subject: image.path)
            }
            let data = MBREntry(sector, at: 446), link = MBREntry(sector, at: 462)
            if !data.isEmpty && !data.isExtended {
                partitions.append(try place(data, number: nextNumber, base: ebr))
                nextNumber += 1
            }
            guard !link.isEmpty, link.isExtended else { return }
            ebr = base + UInt64(link.firstSector)
        }
    }
}

private let mbrTypeNames: [UInt8: String] = [
    0x05: "Extended", 0x07: "HPFS/NTFS/exFAT", 0x0B: "W95 FAT32", 0x0C: "W95 FAT32 (LBA)",
    0x0E: "W95 FAT16 (LBA)", 0x0F: "W95 extended (LBA)", 0x82: "Linux swap", 0x83: "Linux",
    0x85: "Linux extended", 0x8E: "Linux LVM", 0xEE: "GPT", 0xEF: "EFI (FAT-12/16/32)",
    0xFD: "Linux raid autodetect",
]

// MARK: - GPT

private struct GPTHeader {
    var myLBA: UInt64
    var alternateLBA: UInt64
    var entriesLBA: UInt64
    var entryCount: Int
    var entrySize: Int
    var entriesCRC: UInt32
}

private struct GPTReader {
    let image: ImageBytes

    func read(warnings: [String]) throws(QBError) -> PartitionTable {
        var warnings = warnings
        // The header sits at LBA 1 in the disk's logical sectors; a 4Kn disk's
        // image says nothing else about its sector size.
        let sizes = [512, 4096]
        let found = sizes.first { hasSignature(at: Int64($0)) }
            ?? sizes.first { size in lastLBA(size).map { hasSignature(at: Int64($0) * Int64(size)) } ?? false }
        guard let sectorSize = found else {
            throw QBError(.malformed, "the protective MBR announces a GPT, but there is no GPT header", subject: image.path)
        }
        let primaryError: QBError
        switch loadResult(at: 1, sectorSize: sectorSize) {
        case .success(let (header, entries)):
            // Not part of the fallback: a sound header with a wrong partition
            // is an answer, and its backup would say the same.
            return try table(header, entries, sectorSize: sectorSize, warnings: warnings)
        case .failure(let error):
            primaryError = error
        }
        // The primary's own idea of where its backup is, then where a disk
        // image normally has it; a damaged header may still point correctly.
        var candidates: [UInt64] = []
        if let alternate = (try? header(at: 1, sectorSize: sectorSize, checked: false))?.alternateLBA, alternate > 1 {
            candidates.append(alternate)
        }
        if let last = lastLBA(sectorSize), last > 1, !candidates.contains(last) { candidates.append(last) }
        var backupError: QBError?
        for lba in candidates {
            switch loadResult(at: lba, sectorSize: sectorSize) {
            case .success(let (header, entries)):
                warnings.append("primary GPT header: \(primaryError.message); used the backup header at LBA \(lba)")
                return try table(header, entries, sectorSize: sectorSize, warnings: warnings)
            case .failure(let error):
                backupError = backupError ?? error
            }
        }
        // A header whose checksum holds but whose sizes exceed a limit is not
        // damage but a refusal, and says so.
        if primaryError.kind == .limitExceeded { throw primaryError }
        if let backupError, backupError.kind == .limitExceeded { throw backupError }
        throw QBError(.malformed, "GPT header and its backup are both damaged", subject: image.path,
                      hint: "primary: \(primaryError.message); backup: \(backupError?.message ?? "none found")")
    }

    private func hasSignature(at offset: Int64) -> Bool {
        guard offset >= 0, offset <= image.size - 8, let bytes = try? image.read(at: offset, count: 8) else { return false }
        return bytes == Array("EFI PART".utf8)
    }

    private func lastLBA(_ sectorSize: Int) -> UInt64? {
        let sectors = image.size / Int64(sectorSize)
        return sectors >= 2 ? UInt64(sectors - 1) : nil
    }

    /// The byte offset of `lba`, when the sector lies wholly inside the image.
    private func offset(of lba: UInt64, sectorSize: Int) -> Int64? {
        guard let last = lastLBA(sectorSize), lba <= last else { return nil }
        return Int64(lba) * Int64(sectorSize)
    }

    private func header(at lba: UInt64, sectorSize: Int, checked: Bool) throws(QBError) -> GPTHeader {
        guard let offset = offset(of: lba, sectorSize: sectorSize) else {
            throw QBError(.truncated, "LBA \(lba) is past the end of the image", subject: image.path)
        }
        let bytes = try image.read(at: offset, count: sectorSize)
        guard bytes[0..<8].elementsEqual("EFI PART".utf8) else {
            throw QBError(.malformed, "no GPT signature at LBA \(lba)", subject: image.path)
        }
        let headerSize = Int(bytes.le32(12))
        if checked {
            guard bytes.le16(10) == 1 else {
                throw QBError(.malformed, "unknown GPT revision \(bytes.le16(10)).\(bytes.le16(8)) at LBA \(lba)", subject: image.path)
            }
            guard headerSize >= 92, headerSize <= sectorSize else {
                throw QBError(.malformed, "GPT header size \(headerSize) at LBA \(lba) is not between 92 and \(sectorSize)", subject: image.path)
            }
            let stored = bytes.le32(16)
            guard CRC32.checksum(bytes.zeroing(16..<20)[0..<headerSize]) == stored else {
                throw QBError(.malformed, "header checksum mismatch at LBA \(lba)", subject: image.path)
            }
            guard bytes.le64(24) == lba else {
                throw QBError(.malformed, "the GPT header at LBA \(lba) says it is at LBA \(bytes.le64(24))", subject: image.path)
            }
        }
        let count = bytes.le32(80), entrySize = bytes.le32(84)
        if checked {
            guard count <= PartitionTable.maxGPTEntries else {
                throw QBError(.limitExceeded, "the GPT header at LBA \(lba) declares \(count) entries, more than \(PartitionTable.maxGPTEntries)",
                              subject: image.path)
            }
            guard entrySize >= 128, entrySize % 128 == 0, entrySize <= PartitionTable.maxGPTEntrySize else {
                throw QBError(.malformed, "GPT entry size \(entrySize) at LBA \(lba) is not a multiple of 128 up to \(PartitionTable.maxGPTEntrySize)",
                              subject: image.path)
            }
        }
        return GPTHeader(myLBA: bytes.le64(24), alternateLBA: bytes.le64(32), entriesLBA: bytes.le64(72),
                         entryCount: Int(min(count, UInt32(PartitionTable.maxGPTEntries))),
                         entrySize: Int(min(entrySize, UInt32(PartitionTable.maxGPTEntrySize))),
                         entriesCRC: bytes.le32(88))
    }

    private func loadResult(at lba: UInt64, sectorSize: Int) -> Result<(GPTHeader, [UInt8]), QBError> {
        Result { () throws(QBError) in try load(at: lba, sectorSize: sectorSize) }
    }

    private func load(at lba: UInt64, sectorSize: Int) throws(QBError) -> (GPTHeader, [UInt8]) {
        let header = try header(at: lba, sectorSize: sectorSize, checked: true)
        let length = header.entryCount * header.entrySize
        guard let offset = offset(of: header.entriesLBA, sectorSize: sectorSize),
              Int64(length) <= image.size - offset else {
            throw QBError(.truncated, "the partition entries of the GPT header at LBA \(lba) lie past the end of the image",
                          subject: image.path)
        }
        let entries = try image.read(at: offset, count: length)
        guard CRC32.checksum(entries[...]) == header.entriesCRC else {
            throw QBError(.malformed, "partition entry array checksum mismatch (header at LBA \(lba))", subject: image.path)
        }
        return (header, entries)
    }

    private func table(_ header: GPTHeader, _ entries: [UInt8], sectorSize: Int, warnings: [String]) throws(QBError) -> PartitionTable {
        var partitions: [Partition] = []
        let sectors = UInt64(image.size / Int64(sectorSize))
        for index in 0..<header.entryCount {
            let at = index * header.entrySize
            let typeBytes = entries[at..<at + 16]
            if typeBytes.allSatisfy({ $0 == 0 }) { continue }
            let number = index + 1
            let first = entries.le64(at + 32), last = entries.le64(at + 40)
            guard first <= last else {
                throw QBError(.malformed, "partition \(number) ends (LBA \(last)) before it starts (LBA \(first))", subject: image.path)
            }
            // Checked against the image's sector count before any
            // multiplication, so hostile LBAs cannot overflow.
            guard last < sectors else {
                throw QBError(.truncated, "partition \(number) (LBA \(first)...\(last)) runs past the end of the image (\(image.size) bytes)",
                              subject: image.path, hint: "the image is probably truncated")
            }
            let type = guidText(typeBytes)
            var units: [UInt16] = []
            var u = at + 56
            while u + 1 < at + 128 {
                let unit = entries.le16(u)
                if unit == 0 { break }
                units.append(unit)
                u += 2
            }
            partitions.append(Partition(number: number, start: Int64(first) * Int64(sectorSize),
                                        size: Int64(last - first + 1) * Int64(sectorSize),
                                        type: type, typeName: gptTypeNames[type],
                                        name: String(decoding: units, as: UTF16.self)))
        }
        return PartitionTable(scheme: .gpt, partitions: partitions, sectorSize: sectorSize, warnings: warnings)
    }
}

/// GUIDs are stored with their first three fields little-endian and the
/// last two as plain bytes.
private func guidText(_ bytes: ArraySlice<UInt8>) -> String {
    let b = Array(bytes)
    let order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15]
    return order.map { $0 < 0 ? "-" : hex(b[$0]).uppercased() }.joined()
}

private func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}

private let gptTypeNames: [String: String] = [
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
    "CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
]
