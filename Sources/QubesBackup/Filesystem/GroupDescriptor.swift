/// One block group's descriptor: where its bitmaps and inode table are.
/// Only what the reader uses is kept; every block number is checked against
/// the filesystem when the table is loaded.
struct GroupDescriptor: Sendable {
    var inodeTable: UInt64
    var flags: UInt16
    /// Inodes at the end of the group's table never used (uninit_bg and
    /// metadata_csum keep it; 0 otherwise, and then the whole table counts).
    var unusedInodes: UInt32
    /// Whether the descriptor's checksum (metadata_csum or gdt_csum) matched,
    /// or the filesystem has none.
    var checksumMatches: Bool

    static let inodeTableUninitialized: UInt16 = 0x1

    init(_ raw: ArraySlice<UInt8>, group: UInt32, superblock sb: Superblock) {
        let d = Array(raw)
        let wide = sb.descriptorSize >= 64
        inodeTable = UInt64(d.le32(0x08)) | (wide ? UInt64(d.le32(0x28)) << 32 : 0)
        flags = d.le16(0x12)
        let counted = sb.features.readOnlyCompatible.contains(.metadataChecksum) || sb.features.readOnlyCompatible.contains(.groupDescriptorChecksum)
        unusedInodes = counted ? UInt32(d.le16(0x1C)) | (wide ? UInt32(d.le16(0x32)) << 16 : 0) : 0
        let stored = d.le16(0x1E)
        let groupLE = littleEndianBytes(group)
        if sb.features.readOnlyCompatible.contains(.metadataChecksum) {
            let crc = CRC32C.update(CRC32C.update(sb.checksumSeed, groupLE), d.zeroing(0x1E..<0x20))
            checksumMatches = UInt16(truncatingIfNeeded: crc) == stored
        } else if sb.features.readOnlyCompatible.contains(.groupDescriptorChecksum) {
            var crc = CRC16.update(0xFFFF, sb.uuid)
            crc = CRC16.update(crc, groupLE)
            crc = CRC16.update(crc, d[0..<0x1E])
            if d.count > 0x20 { crc = CRC16.update(crc, d[0x20...]) }
            checksumMatches = crc == stored
        } else {
            checksumMatches = true
        }
    }
}

/// The CRC-16 of gdt_csum (uninit_bg): polynomial 0x8005, reflected, no
/// inversion, as e2fsprogs' lib/ext2fs/crc16.c computes it.
enum CRC16 {
    static let table: [UInt16] = (0..<256).map { (n: Int) -> UInt16 in
        var c = UInt16(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xA001 : c >> 1 }
        return c
    }

    static func update<C: Collection>(_ crc: UInt16, _ bytes: C) -> UInt16 where C.Element == UInt8 {
        var c = crc
        for b in bytes { c = (c >> 8) ^ table[Int((c ^ UInt16(b)) & 0xFF)] }
        return c
    }
}
