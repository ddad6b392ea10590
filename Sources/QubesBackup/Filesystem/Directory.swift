/// One name in a directory.
public struct DirectoryEntry: Sendable, Equatable {
    public var inode: UInt32
    public var name: [UInt8]
    /// The type the entry records (with the filetype feature), or nil.
    public var kind: FileKind?
}

extension Ext4Filesystem {
    /// The entries of a directory, `.` and `..` left out. Linear and
    /// hashed (htree) directories are read the same way: an htree's index
    /// blocks look like empty entries to a linear reader, which is how the
    /// format keeps old readers working. Every record length and name
    /// length is checked against its block; checksums are verified with
    /// metadata_csum.
    public func directoryEntries(of inode: Inode) throws(QBError) -> [DirectoryEntry] {
        guard inode.kind == .directory else { throw QBError(.malformed, "inode \(inode.number) is not a directory") }
        if inode.hasInlineData { return try inlineDirectoryEntries(inode) }
        guard inode.size <= UInt64(options.maxDirectoryBytes) else {
            throw QBError(.limitExceeded, "directory inode \(inode.number) is \(inode.size) bytes, over the \(options.maxDirectoryBytes)-byte limit")
        }
        var entries: [DirectoryEntry] = []
        let indexed = inode.flags & Inode.indexFlag != 0
        try forEachRun(of: inode) { (run: DataRun) throws(QBError) in
            if run.unwritten { return }
            for i in 0..<run.count {
                let bytes = try block(run.physical + i, what: "directory inode \(inode.number)")
                try parseDirectoryBlock(bytes, inode: inode, logical: run.logical + i, indexed: indexed, into: &entries)
            }
        }
        return entries
    }

    /// A record length as stored: 64 KiB blocks need 17 bits, so the
    /// kernel keeps the high bits in the low two (always zero otherwise).
    private func recordLength(_ stored: UInt16) -> Int {
        if blockSize < 65536 { return Int(stored) }
        if stored == 65535 || stored == 0 { return blockSize }
        return Int(stored & 65532) | Int(stored & 3) << 16
    }

    private func parseDirectoryBlock(_ bytes: [UInt8], inode: Inode, logical: UInt64, indexed: Bool,
                                     into entries: inout [DirectoryEntry]) throws(QBError) {
        let where_ = "directory inode \(inode.number) block \(logical)"
        var end = bytes.count
        if hasMetadataChecksums {
            if let dx = htreeCountOffset(bytes, logical: logical, indexed: indexed) {
                try verifyHtreeNode(bytes, countOffset: dx, inode: inode, where_: where_)
                return
            }
            // A leaf ends with a fake 12-byte entry holding the checksum.
            let tail = bytes.count - 12
            if bytes.le32(tail) == 0 && bytes.le16(tail + 4) == 12 && bytes[tail + 6] == 0 && bytes[tail + 7] == 0xDE {
                if options.verifyChecksums {
                    let crc = CRC32C.update(inode.checksumSeed, bytes[0..<tail])
                    guard crc == bytes.le32(tail + 8) else { throw QBError(.malformed, "\(where_): checksum does not match") }
                }
                end = tail
            } else if options.verifyChecksums {
                throw QBError(.malformed, "\(where_): no checksum tail")
            }
        }
        let hasFileType = superblock.features.incompatible.contains(.fileType)
        var at = 0
        while at < end {
            guard end - at >= 8 else { throw QBError(.malformed, "\(where_): entry at \(at) is cut short") }
            let number = bytes.le32(at)
            let length = recordLength(bytes.le16(at + 4))
            let nameLength = hasFileType ? Int(bytes[at + 6]) : Int(bytes.le16(at + 6))
            guard length >= 8, length % 4 == 0, length <= end - at, 8 + nameLength <= length else {
                throw QBError(.malformed, "\(where_): entry at \(at) has record length \(length) for a \(nameLength)-byte name")
            }
            if number != 0 {
                let name = Array(bytes[(at + 8)..<(at + 8 + nameLength)])
                if !(name == [0x2E] || name == [0x2E, 0x2E]) {
                    entries.append(DirectoryEntry(inode: number, name: name, kind: hasFileType ? Self.kind(ofEntryType: bytes[at + 7]) : nil))
                }
            }
            at += length
        }
    }

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
        if bytes.le32(0) == 0 && recordLength(bytes.le16(4)) == blockSize && bytes[6] == 0 { return 8 }
        return nil
    }

    private func verifyHtreeNode(_ bytes: [UInt8], countOffset: Int, inode: Inode, where_: String) throws(QBError) {
        guard options.verifyChecksums else { return }
        guard countOffset + 4 <= bytes.count else { throw QBError(.malformed, "\(where_): htree header is cut short") }
        let limit = Int(bytes.le16(countOffset)), count = Int(bytes.le16(countOffset + 2))
        let tail = countOffset + 8 * limit
        guard count <= limit, tail + 8 <= bytes.count else {
            throw QBError(.malformed, "\(where_): htree node claims \(count) of \(limit) entries")
        }
        // The tail's checksum field counts as four zero bytes.
        var crc = CRC32C.update(inode.checksumSeed, bytes[0..<(countOffset + 8 * count)])
        crc = CRC32C.update(crc, bytes[tail..<(tail + 4)] + [0, 0, 0, 0])
        guard crc == bytes.le32(tail + 4) else { throw QBError(.malformed, "\(where_): htree checksum does not match") }
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

    private func inlineDirectoryEntries(_ inode: Inode) throws(QBError) -> [DirectoryEntry] {
        // The parent's number comes first, then entries with no "." or "..".
        var entries: [DirectoryEntry] = []
        let area = Array(inode.blockArea[4...])
        try parseInlineEntries(area, inode: inode, into: &entries)
        let rest = try inlineAttributeValue(of: inode)
        if !rest.isEmpty { try parseInlineEntries(rest, inode: inode, into: &entries) }
        return entries
    }

    private func parseInlineEntries(_ bytes: [UInt8], inode: Inode, into entries: inout [DirectoryEntry]) throws(QBError) {
        let hasFileType = superblock.features.incompatible.contains(.fileType)
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 8 else { throw QBError(.malformed, "inline directory inode \(inode.number): entry at \(at) is cut short") }
            let number = bytes.le32(at)
            let length = Int(bytes.le16(at + 4))
            let nameLength = hasFileType ? Int(bytes[at + 6]) : Int(bytes.le16(at + 6))
            guard length >= 8, length % 4 == 0, length <= bytes.count - at, 8 + nameLength <= length else {
                throw QBError(.malformed, "inline directory inode \(inode.number): entry at \(at) has record length \(length)")
            }
            if number != 0 {
                entries.append(DirectoryEntry(inode: number, name: Array(bytes[(at + 8)..<(at + 8 + nameLength)]),
                                              kind: hasFileType ? Self.kind(ofEntryType: bytes[at + 7]) : nil))
            }
            at += length
        }
    }

    /// The value of `system.data` among the inode's in-inode attributes
    /// (empty when absent).
    private func inlineAttributeValue(of inode: Inode) throws(QBError) -> [UInt8] {
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

    /// A symbolic link's target, as stored: never resolved.
    public func symlinkTarget(of inode: Inode) throws(QBError) -> [UInt8] {
        guard inode.size > 0 else { throw QBError(.malformed, "symbolic link inode \(inode.number) has an empty target") }
        let target: [UInt8]
        if inode.hasInlineData {
            target = try inlineData(of: inode)
            guard UInt64(target.count) == inode.size else {
                throw QBError(.malformed, "symbolic link inode \(inode.number): inline target is shorter than its size \(inode.size)")
            }
        } else if inode.size < 60 && ownsNoDataBlocks(inode) {
            // A fast symlink keeps its target where the block map would be.
            target = Array(inode.blockArea[0..<Int(inode.size)])
        } else {
            guard inode.size <= UInt64(blockSize), inode.size <= 4096 else {
                throw QBError(.malformed, "symbolic link inode \(inode.number) has a \(inode.size)-byte target")
            }
            var found: [UInt8]?
            try forEachRun(of: inode) { (run: DataRun) throws(QBError) in
                if run.logical == 0 && !run.unwritten {
                    found = Array(try block(run.physical, what: "symbolic link inode \(inode.number)")[0..<Int(inode.size)])
                }
            }
            guard let found else { throw QBError(.malformed, "symbolic link inode \(inode.number) has no data block") }
            target = found
        }
        guard !target.contains(0) else { throw QBError(.malformed, "symbolic link inode \(inode.number) has a NUL byte in its target") }
        return target
    }

    private func ownsNoDataBlocks(_ inode: Inode) -> Bool {
        let attributeBlocks: UInt64 = inode.extendedAttributeBlock != 0 ? UInt64(blockSize / 512) : 0
        return inode.blocks <= attributeBlocks
    }
}
