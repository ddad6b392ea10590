/// Where in an image the filesystem to read is.
public struct FilesystemLocation: Sendable {
    public var window: ImageWindow
    /// The partition chosen, or nil for a filesystem at offset 0.
    public var partition: Int?
}

public enum FilesystemLocator {
    /// Chooses the filesystem: partition `partition` when given; otherwise
    /// a filesystem at offset 0, else the only partition that holds an
    /// ext2/3/4 filesystem.
    public static func locate(in file: ImageBytes, table: PartitionTable, partition: Int?) throws(QBError) -> FilesystemLocation {
        var candidates: [Partition] = []
        var foreign: [(Int, ForeignFormat)] = []
        for p in table.partitions {
            switch probe(file, start: p.start, length: p.size) {
            case .ext: candidates.append(p)
            case .foreign(let format): foreign.append((p.number, format))
            case .unknown: break
            }
        }
        if let partition {
            guard let chosen = table.partitions.first(where: { $0.number == partition }) else {
                let numbers = table.partitions.map { String($0.number) }.joined(separator: ", ")
                throw QBError(.usage, "there is no partition \(partition)", subject: file.path,
                              hint: numbers.isEmpty ? "the image has no partition table" : "partitions: \(numbers)")
            }
            if let (_, format) = foreign.first(where: { $0.0 == partition }) {
                throw QBError(.unsupported, "partition \(partition) \(format.refusal)", subject: file.path)
            }
            return FilesystemLocation(window: try ImageWindow(file: file, start: chosen.start, length: chosen.size),
                                      partition: partition)
        }
        let whole = try ImageWindow(file: file)
        if case .ext = probe(file, start: 0, length: file.size) {
            return FilesystemLocation(window: whole, partition: nil)
        }
        // No partitions (an NTFS or FAT boot sector looks like an empty
        // MBR): the image is one volume.
        if table.partitions.isEmpty {
            if let format = ForeignFormat.identify(whole) { throw QBError(.unsupported, format.refusal, subject: file.path) }
            return FilesystemLocation(window: whole, partition: nil)
        }
        guard candidates.count == 1 else {
            if candidates.isEmpty {
                let held = foreign.map { "\($0.0) holds \($0.1.name): \($0.1.advice)" }
                throw QBError(foreign.isEmpty ? .malformed : .unsupported,
                              "no ext2/3/4 filesystem in any of the \(table.partitions.count) partitions" + (held.isEmpty ? "" : "; partition " + held.joined(separator: "; partition ")),
                              subject: file.path)
            }
            throw QBError(.usage, "several partitions hold a filesystem (\(candidates.map { String($0.number) }.joined(separator: ", ")))",
                          subject: file.path, hint: "choose one with --partition N")
        }
        let only = candidates[0]
        return FilesystemLocation(window: try ImageWindow(file: file, start: only.start, length: only.size),
                                  partition: only.number)
    }

    /// What a range of the image starts with.
    public enum Probe: Sendable, Equatable {
        /// A superblock that parses: "ext2", "ext3" or "ext4".
        case ext(String)
        case foreign(ForeignFormat)
        case unknown
    }

    public static func probe(_ file: ImageBytes, start: Int64, length: Int64) -> Probe {
        guard let window = try? ImageWindow(file: file, start: start, length: length) else { return .unknown }
        if let raw = try? window.read(at: Superblock.offset, count: Superblock.size),
           let sb = try? Superblock(raw, filesystemBytes: length) {
            return .ext(sb.typeName)
        }
        return ForeignFormat.identify(window).map { .foreign($0) } ?? .unknown
    }
}

extension Superblock {
    /// The name mke2fs would give: ext4 once any ext4-only feature is on,
    /// ext3 with a journal, else ext2.
    public var typeName: String {
        let ext4Incompatible: FeatureSet.Incompatible = [.extents, .bit64, .flexibleBlockGroups, .inlineData, .checksumSeed,
                                                         .encryption, .casefold, .largeDirectories, .metaBlockGroups]
        let ext4ReadOnly: FeatureSet.ReadOnlyCompatible = [.hugeFile, .groupDescriptorChecksum, .metadataChecksum]
        if !features.incompatible.intersection(ext4Incompatible).isEmpty || !features.readOnlyCompatible.intersection(ext4ReadOnly).isEmpty {
            return "ext4"
        }
        return features.compatible.contains(.hasJournal) ? "ext3" : "ext2"
    }

    /// The UUID in its usual text form.
    public var uuidString: String { QubesBackup.uuidString(uuid) }
}

/// What `qb-fs --info` says of a filesystem, line by line.
public struct FilesystemSummary {
    public let lines: [String]

    public init(_ fs: Ext4Filesystem) {
        let sb = fs.superblock
        var l: [String] = []
        l.append("type: \(sb.typeName)")
        l.append("label: \(String(decoding: sb.label, as: UTF8.self))")
        l.append("UUID: \(sb.uuidString)")
        l.append("block size: \(sb.blockSize)")
        l.append("blocks: \(sb.blocksCount) (\(sb.blocksCount * UInt64(sb.blockSize)) bytes)")
        l.append("inodes: \(sb.inodesCount), \(sb.inodeSize) bytes each")
        l.append("block groups: \(sb.groupCount)")
        l.append("features: \(sb.features.names.joined(separator: " "))")
        var state: [String] = []
        state.append(sb.state & 1 != 0 ? "cleanly unmounted" : "not cleanly unmounted")
        if sb.state & 2 != 0 { state.append("errors recorded") }
        if sb.state & 4 != 0 { state.append("orphans being recovered") }
        l.append("state: \(state.joined(separator: ", "))")
        if sb.features.readOnlyCompatible.contains(.metadataChecksum) {
            l.append("metadata checksums: crc32c, superblock \(sb.checksumMatches ? "matches" : "DOES NOT MATCH")")
        } else if sb.features.readOnlyCompatible.contains(.groupDescriptorChecksum) {
            l.append("metadata checksums: group descriptors only (crc16)")
        } else {
            l.append("metadata checksums: none")
        }
        if let journal = fs.journalSummary {
            var line = sb.journalInode == 0 ? "journal: \(journal)" : "journal: inode \(sb.journalInode), \(journal)"
            if let j = fs.journalSuperblock { line += "; checksums \(j.checksumDescription)" }
            l.append(line)
        } else {
            l.append("journal: none")
        }
        if !sb.lastMounted.isEmpty { l.append("last mounted on: \(String(decoding: sb.lastMounted, as: UTF8.self))") }
        lines = l
    }
}
