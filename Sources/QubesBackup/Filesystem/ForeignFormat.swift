/// What a volume holds when it is not ext2/3/4: a Windows qube's NTFS, an
/// encrypted or LVM volume inside a qube, another Linux filesystem. Named
/// from its signature (the bytes blkid's probes look at), with the program
/// that reads it, so the user is not left with "no filesystem".
public struct ForeignFormat: Sendable, Equatable {
    public let name: String
    /// What to do instead, as a clause: "read it with …".
    public let advice: String

    /// Signatures: (offset, bytes, name, advice), first match wins.
    private static let signatures: [(Int, [UInt8], String, String)] = [
        (0, Array("LUKS".utf8) + [0xBA, 0xBE], "LUKS (encrypted volume)",
         "open it with `cryptsetup open`, then run qb-fs on /dev/mapper/NAME"),
        (3, Array("-FVE-FS-".utf8), "BitLocker (encrypted volume)", "open it with dislocker or `cryptsetup open --type bitlk`"),
        (3, Array("NTFS    ".utf8), "NTFS", "read it with ntfs-3g (ntfsls, ntfscp) or 7z"),
        (3, Array("EXFAT   ".utf8), "exFAT", "read it with 7z or exfat-fuse"),
        (0x52, Array("FAT32   ".utf8), "FAT32", "read it with mtools (mdir, mcopy) or 7z"),
        (0x36, Array("FAT16   ".utf8), "FAT16", "read it with mtools (mdir, mcopy) or 7z"),
        (0x36, Array("FAT12   ".utf8), "FAT12", "read it with mtools (mdir, mcopy) or 7z"),
        (0, Array("XFSB".utf8), "XFS", "mount it read-only (mount -o ro,norecovery) or copy files out with xfs_db"),
        (0x10040, Array("_BHRfS_M".utf8), "btrfs", "copy its files out with `btrfs restore` (btrfs-progs), which needs no mount"),
        (0x400, [0x10, 0x20, 0xF5, 0xF2], "F2FS", "mount it read-only"),
        (0, Array("hsqs".utf8), "squashfs", "read it with unsquashfs (squashfs-tools)"),
        (0x8001, Array("CD001".utf8), "ISO 9660", "read it with `bsdtar -xf` or 7z"),
        (0xFF6, Array("SWAPSPACE2".utf8), "Linux swap", "a swap area holds no files"),
        (0xFF6, Array("SWAP-SPACE".utf8), "Linux swap", "a swap area holds no files"),
    ]

    /// An LVM physical volume's label is in one of its first four sectors.
    private static let lvm = ForeignFormat(name: "LVM physical volume",
                                           advice: "activate it with `vgchange -ay` (lvm2), then run qb-fs on the logical volume")

    /// Bytes `identify` looks at, from the volume's start.
    public static let probeLength = 0x10048

    /// The format whose signature starts `bytes` (the first bytes of a
    /// volume, up to `probeLength`), or nil.
    public static func identify(_ bytes: [UInt8]) -> ForeignFormat? {
        for (offset, magic, name, advice) in signatures where offset + magic.count <= bytes.count {
            if bytes[offset..<(offset + magic.count)].elementsEqual(magic) {
                return ForeignFormat(name: name, advice: advice)
            }
        }
        for sector in 0..<4 {
            let at = sector * 512
            if at + 32 <= bytes.count, bytes[at..<(at + 8)].elementsEqual("LABELONE".utf8),
               bytes[(at + 24)..<(at + 32)].elementsEqual("LVM2 001".utf8) {
                return lvm
            }
        }
        return nil
    }

    /// Reads the start of `window` and identifies it.
    public static func identify(_ window: ImageWindow) -> ForeignFormat? {
        let count = Int(min(Int64(probeLength), window.length))
        guard count > 0, let bytes = try? window.read(at: 0, count: count) else { return nil }
        return identify(bytes)
    }

    /// "holds NTFS, which qb-fs does not read: read it with …"
    public var refusal: String { "holds \(name), not an ext2/3/4 filesystem: \(advice)" }
}
