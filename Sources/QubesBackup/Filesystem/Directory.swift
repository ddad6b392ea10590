/// One name in a directory.
public struct DirectoryEntry: Sendable, Equatable {
    public var inode: UInt32
    public var name: [UInt8]
    /// The type the entry records (with the filetype feature), or nil.
    public var kind: FileKind?
}

/// A directory's entries, read a block at a time: what is held is one
/// block and the directory's data runs, whatever the directory's size
/// (ext4 never shrinks a directory, so one that once held millions of names
/// keeps its size). Linear and hashed (htree) directories are read the same
/// way: an htree's index blocks look like empty entries to a linear
/// reader, which is how the format keeps old readers working.
///
/// As the kernel's readdir does, a block that fails its checks (checksum,
/// an entry whose lengths do not fit) is reported and skipped, and the
/// entries of the other blocks are read.
struct DirectoryStream {
    let inode: Inode
    /// Where the directory's blocks are; empty for inline data.
    private let runs: [DataRun]
    private var runIndex = 0
    private var blockInRun: UInt64 = 0
    /// Inline directories: the entry areas still to parse (i_block after
    /// the parent's number, then the system.data attribute's value).
    private var inlineAreas: [[UInt8]]
    /// The parent's inode number of an inline directory (its first 4 bytes).
    private(set) var inlineParent: UInt32?
    private var current: DirectoryBlock?

    /// Bytes held: the runs and one block.
    var heldBytes: Int { runs.count * MemoryLayout<DataRun>.stride + (current?.bytes.count ?? 0) + inlineAreas.reduce(0) { $0 + $1.count } }

    /// Opens `inode`'s entries; `claims` claims its blocks (a walk).
    init(_ fs: Ext4Filesystem, _ inode: Inode, claiming claims: BlockClaims? = nil) throws(QBError) {
        guard inode.kind == .directory else { throw QBError(.malformed, "inode \(inode.number) is not a directory") }
        self.inode = inode
        if inode.hasInlineData {
            runs = []
            // The parent's number comes first, then entries with no "." or "..".
            inlineParent = inode.blockArea.le32(0)
            let rest = try fs.inlineAttributeValue(of: inode)
            inlineAreas = [Array(inode.blockArea[4...])] + (rest.isEmpty ? [] : [rest])
        } else {
            runs = try fs.runs(of: inode, claiming: claims).filter { !$0.unwritten }
            inlineAreas = []
        }
    }

    /// The next entry (`.` and `..` left out), or nil at the end. A block
    /// that cannot be read is passed to `damaged` and skipped.
    mutating func next(_ fs: Ext4Filesystem, damaged: (QBError) -> Void) throws(QBError) -> DirectoryEntry? {
        while true {
            if current != nil {
                do throws(QBError) {
                    if let entry = try current!.next(fs) { return entry }
                } catch {
                    damaged(error)
                }
                current = nil
            }
            if !inlineAreas.isEmpty {
                let area = inlineAreas.removeFirst()
                current = DirectoryBlock(bytes: area, end: area.count, inline: true, inode: inode.number, logical: nil)
                continue
            }
            guard runIndex < runs.count else { return nil }
            let run = runs[runIndex]
            let logical = run.logical + blockInRun, physical = run.physical + blockInRun
            blockInRun += 1
            if blockInRun == run.count { runIndex += 1; blockInRun = 0 }
            do throws(QBError) {
                let bytes = try fs.block(physical, what: "directory inode \(inode.number)")
                current = try fs.directoryBlock(bytes, inode: inode, logical: logical)
            } catch {
                damaged(error)
            }
        }
    }
}

/// One directory block, its checksum checked, parsed entry by entry.
struct DirectoryBlock {
    let bytes: [UInt8]
    /// Where the entries end: before the checksum tail when there is one.
    let end: Int
    /// Inline directories keep 16-bit record lengths as they are.
    let inline: Bool
    let inode: UInt32
    let logical: UInt64?
    var at = 0

    init(bytes: [UInt8], end: Int, inline: Bool, inode: UInt32, logical: UInt64?) {
        self.bytes = bytes
        self.end = end
        self.inline = inline
        self.inode = inode
        self.logical = logical
    }

    private var place: String {
        logical.map { "directory inode \(inode) block \($0)" } ?? "inline directory inode \(inode)"
    }

    /// A record length as stored: 64 KiB blocks need 17 bits, so the
    /// kernel keeps the high bits in the low two (always zero otherwise).
    private func recordLength(_ stored: UInt16) -> Int {
        if inline || bytes.count < 65536 { return Int(stored) }
        if stored == 65535 || stored == 0 { return 65536 }
        return Int(stored & 65532) | Int(stored & 3) << 16
    }

    /// The next entry with an inode, `.` and `..` left out, or nil at the
    /// block's end. The checks are the kernel's (ext4_check_dir_entry):
    /// a record holds at least a one-byte name, is a multiple of 4 bytes,
    /// holds its name, stays inside the block and names an inode that can
    /// exist. `name_len` is one byte: the byte after it is the file type
    /// with the filetype feature and unused without.
    mutating func next(_ fs: Ext4Filesystem) throws(QBError) -> DirectoryEntry? {
        let hasFileType = fs.superblock.features.incompatible.contains(.fileType)
        while at < end {
            guard end - at >= 8 else { throw QBError(.malformed, "\(place): entry at byte \(at) is cut short; the rest of the block is skipped") }
            let number = bytes.le32(at)
            let length = recordLength(bytes.le16(at + 4))
            let nameLength = Int(bytes[at + 6])
            guard length >= 12, length % 4 == 0, length >= (nameLength + 11) & ~3, length <= end - at else {
                throw QBError(.malformed, "\(place): entry at byte \(at) has record length \(length) for a \(nameLength)-byte name; the rest of the block is skipped")
            }
            guard number <= fs.superblock.inodesCount else {
                throw QBError(.malformed, "\(place): entry at byte \(at) names inode \(number), past the filesystem's \(fs.superblock.inodesCount); the rest of the block is skipped")
            }
            let start = at
            at += length
            if number == 0 { continue }
            let name = Array(bytes[(start + 8)..<(start + 8 + nameLength)])
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            return DirectoryEntry(inode: number, name: name, kind: hasFileType ? Ext4Filesystem.kind(ofEntryType: bytes[start + 7]) : nil)
        }
        return nil
    }
}

extension Ext4Filesystem {
    static func kind(ofEntryType type: UInt8) -> FileKind? {
        switch type {
        case 1: return .regular
        case 2: return .directory
        case 3: return .characterDevice
        case 4: return .blockDevice
        case 5: return .fifo
        case 6: return .socket
        case 7: return .symbolicLink
        default: return nil
        }
    }

    /// Checks directory block `logical` of `inode` and gives its entries:
    /// none for an htree index block (only its checksum is checked), the
    /// entries before the checksum tail for a leaf with metadata_csum.
    func directoryBlock(_ bytes: [UInt8], inode: Inode, logical: UInt64) throws(QBError) -> DirectoryBlock {
        let place = "directory inode \(inode.number) block \(logical)"
        var end = bytes.count
        if hasMetadataChecksums {
            if let dx = htreeCountOffset(bytes, logical: logical, indexed: inode.flags & Inode.indexFlag != 0) {
                try verifyHtreeNode(bytes, countOffset: dx, inode: inode, place: place)
                return DirectoryBlock(bytes: [], end: 0, inline: false, inode: inode.number, logical: logical)
            }
            // A leaf ends with a fake 12-byte entry holding the checksum.
            let tail = bytes.count - 12
            if bytes.le32(tail) == 0 && bytes.le16(tail + 4) == 12 && bytes[tail + 6] == 0 && bytes[tail + 7] == 0xDE {
                if options.verifyChecksums {
                    let crc = CRC32C.update(inode.checksumSeed, bytes[0..<tail])
                    guard crc == bytes.le32(tail + 8) else { throw QBError(.malformed, "\(place): checksum does not match; its entries are skipped") }
                }
                end = tail
            } else if options.verifyChecksums {
                throw QBError(.malformed, "\(place): no checksum tail; its entries are skipped")
            }
        }
        return DirectoryBlock(bytes: bytes, end: end, inline: false, inode: inode.number, logical: logical)
    }

    /// Where an htree index block keeps its limit/count pair, or nil for a
    /// leaf: the root is logical block 0 of an indexed directory; interior
    /// nodes are one empty entry spanning the block.
    private func htreeCountOffset(_ bytes: [UInt8], logical: UInt64, indexed: Bool) -> Int? {
        guard indexed else { return nil }
        if logical == 0 {
            // "." (12 bytes), ".." spanning the rest, then dx_root_info (8 bytes).
            let infoLength = Int(bytes[0x1D])
            return 0x18 + infoLength
        }
        let stored = bytes.le16(4)
        let spansBlock = blockSize < 65536 ? Int(stored) == blockSize : (stored == 0 || stored == 65535)
        if bytes.le32(0) == 0 && spansBlock && bytes[6] == 0 { return 8 }
        return nil
    }

    private func verifyHtreeNode(_ bytes: [UInt8], countOffset: Int, inode: Inode, place: String) throws(QBError) {
        guard options.verifyChecksums else { return }
        guard countOffset + 4 <= bytes.count else { throw QBError(.malformed, "\(place): htree header is cut short") }
        let limit = Int(bytes.le16(countOffset)), count = Int(bytes.le16(countOffset + 2))
        let tail = countOffset + 8 * limit
        guard count <= limit, tail + 8 <= bytes.count else {
            throw QBError(.malformed, "\(place): htree node claims \(count) of \(limit) entries")
        }
        // The tail's checksum field counts as four zero bytes.
        var crc = CRC32C.update(inode.checksumSeed, bytes[0..<(countOffset + 8 * count)])
        crc = CRC32C.update(crc, bytes[tail..<(tail + 4)] + [0, 0, 0, 0])
        guard crc == bytes.le32(tail + 4) else { throw QBError(.malformed, "\(place): htree checksum does not match") }
    }

    // MARK: - Inline data

    /// An inline file's stored bytes: the 60 bytes of i_block, then the
    /// value of the in-inode extended attribute `system.data`, cut to the
    /// file's size. A size beyond them is a hole (the kernel reads zeros
    /// there), so this may be shorter than the file.
    public func inlineData(of inode: Inode) throws(QBError) -> [UInt8] {
        let rest = try inlineAttributeValue(of: inode)
        var data = inode.blockArea
        data.append(contentsOf: rest)
        return Array(data[0..<Int(min(inode.size, UInt64(data.count)))])
    }

    /// The value of `system.data` among the inode's in-inode attributes
    /// (empty when absent).
    func inlineAttributeValue(of inode: Inode) throws(QBError) -> [UInt8] {
        let area = inode.extraArea
        guard area.count >= 4, area.le32(0) == 0xEA02_0000 else { return [] }
        let base = 4
        var at = base
        while at + 16 <= area.count {
            if area.le32(at) == 0 { break }
            let nameLength = Int(area[at]), index = area[at + 1]
            let valueOffset = Int(area.le16(at + 2)), valueInode = area.le32(at + 4), valueSize = Int(area.le32(at + 8))
            let next = at + ((16 + nameLength + 3) & ~3)
            guard next <= area.count else { throw QBError(.malformed, "inode \(inode.number): extended attribute runs past the inode") }
            // Name index 7 is the "system." namespace.
            if index == 7 && Array(area[(at + 16)..<(at + 16 + nameLength)]) == Array("data".utf8) {
                guard valueInode == 0 else { throw QBError(.unsupported, "inode \(inode.number): inline data kept in an attribute inode") }
                guard valueSize <= area.count, base + valueOffset <= area.count - valueSize else {
                    throw QBError(.malformed, "inode \(inode.number): inline data attribute runs past the inode")
                }
                return Array(area[(base + valueOffset)..<(base + valueOffset + valueSize)])
            }
            at = next
        }
        return []
    }

    // MARK: - Symbolic links

    /// Symbolic link targets the kernel accepts: shorter than a block.
    /// Longer ones cannot be created on Linux (PATH_MAX is 4096); the
    /// extraction reports them, the listing shows them.
    public func symlinkTarget(of inode: Inode) throws(QBError) -> [UInt8] {
        if inode.isEncrypted {
            throw QBError(.unsupported, "encrypted (fscrypt) symbolic link: its target is not read", hint: "qb-fs has no key to decrypt it")
        }
        guard inode.size > 0 else { throw QBError(.malformed, "symbolic link inode \(inode.number) has an empty target") }
        guard inode.size < UInt64(blockSize) else {
            throw QBError(.malformed, "symbolic link inode \(inode.number) has a \(inode.size)-byte target, longer than a block")
        }
        let size = Int(inode.size)
        let target: [UInt8]
        if inode.hasInlineData {
            target = try inlineData(of: inode)
            guard target.count == size else {
                throw QBError(.malformed, "symbolic link inode \(inode.number): inline target is shorter than its size \(inode.size)")
            }
        } else if size < inode.blockArea.count {
            // Fast or slow is decided by the size alone, as e2fsprogs'
            // ext2fs_is_fast_symlink does: i_blocks also counts an
            // extended-attribute block or inode, so it cannot tell.
            target = Array(inode.blockArea[0..<size])
        } else {
            var found: [UInt8]?
            try forEachRun(of: inode) { (run: DataRun) throws(QBError) in
                if run.logical == 0 && !run.unwritten {
                    found = Array(try block(run.physical, what: "symbolic link inode \(inode.number)")[0..<size])
                }
            }
            guard let found else { throw QBError(.malformed, "symbolic link inode \(inode.number) has no data block") }
            target = found
        }
        guard !target.contains(0) else { throw QBError(.malformed, "symbolic link inode \(inode.number) has a NUL byte in its target") }
        return target
    }
}
