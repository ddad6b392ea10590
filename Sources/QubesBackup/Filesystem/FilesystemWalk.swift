/// A file met by the walk, with everything its consumer needs.
public struct FileNode: Sendable {
    /// Relative path inside the filesystem, without a leading `/`.
    public var path: [UInt8]
    public var inode: Inode
    /// A symbolic link's target, as stored.
    public var linkTarget: [UInt8]
    /// Set on the second and later names of a multiply-linked file: the
    /// path under which it was first given.
    public var hardLinkTo: [UInt8]?

    public var name: String { String(decoding: path, as: UTF8.self) }
    public var kind: FileKind { inode.kind }

    /// The node for a `tar -tv`-style listing (a socket shows as `?`).
    public var listingEntry: TarEntry { tarEntry ?? entry(kind: .other(UInt8(ascii: "s")), target: []) }

    /// The node as a tar entry (for extraction and `--tar`), or nil for a
    /// socket, which tar cannot carry.
    public var tarEntry: TarEntry? {
        var kind: TarEntryKind
        switch inode.kind {
        case .regular: kind = .regular
        case .directory: kind = .directory
        case .symbolicLink: kind = .symbolicLink
        case .characterDevice: kind = .characterDevice
        case .blockDevice: kind = .blockDevice
        case .fifo: kind = .fifo
        case .socket: return nil
        }
        var target = linkTarget
        if let hardLinkTo { kind = .hardLink; target = hardLinkTo }
        return entry(kind: kind, target: target)
    }

    private func entry(kind: TarEntryKind, target: [UInt8]) -> TarEntry {
        let device = inode.device
        return TarEntry(path: path, linkTarget: target, kind: kind, mode: inode.permissions,
                        uid: Int64(inode.uid), gid: Int64(inode.gid), userName: "", groupName: "",
                        modificationTime: inode.modificationTime, modificationNanoseconds: inode.modificationNanoseconds,
                        size: kind == .regular ? Int64(inode.size) : 0, storedSize: kind == .regular ? Int64(inode.size) : 0,
                        sparseMap: nil, deviceMajor: Int64(device.major), deviceMinor: Int64(device.minor),
                        format: .pax, rawHeader: [])
    }
}

/// Something the walk could not read: reported, skipped, and the walk goes on.
public struct FileProblem: Sendable, CustomStringConvertible {
    public var path: String
    public var inode: UInt32
    public var error: QBError
    public var description: String { "\(path.isEmpty ? "/" : path) (inode \(inode)): \(error.message)" }
}

/// What a walk holds in memory, against one budget: the open directories
/// (each a block, its data runs and its path) at every level of nesting, and
/// the first names of hard-linked files. Held memory is summed over the
/// whole walk, not capped per structure, so neither deep nesting nor many
/// large directories can add up past it.
struct WalkBudget {
    let limit: Int
    private(set) var held = 0

    mutating func take(_ bytes: Int) -> Bool {
        guard bytes <= limit - held else { return false }
        held += bytes
        return true
    }

    mutating func give(_ bytes: Int) { held -= bytes }

    /// The error for what did not fit; `hint` (how to raise the budget)
    /// is part of the message, since a damaged file's line shows only that.
    func exhausted(_ what: String, hint: String?) -> QBError {
        QBError(.limitExceeded, "the walk's memory budget of \(limit >> 20) MiB is used up: \(what)" + (hint.map { " (\($0))" } ?? ""))
    }
}

/// The first name under which each file was given, so that a later name
/// of the same inode becomes a hard link to it. Kept for every file, not
/// only those whose link count says they have several names: a link count
/// can be wrong, and a second copy of a file is output a damaged count
/// could multiply. Paths are kept end to end in one array. Files with a
/// link count of 1 are kept within a quarter of the walk's budget, so that
/// on a filesystem of millions of files they cannot crowd out the names of
/// real hard links.
struct FirstNames {
    private var bytes: [UInt8] = []
    /// Inode → offset (high 44 bits) and length (low 20 bits) in `bytes`.
    private var index: [UInt32: UInt64] = [:]
    private var singlyLinkedBytes = 0

    /// Memory charged per name besides its bytes: the index entry and slack.
    static let overhead = 32

    subscript(inode: UInt32) -> [UInt8]? {
        guard let packed = index[inode] else { return nil }
        let offset = Int(packed >> 20), length = Int(packed & 0xF_FFFF)
        return Array(bytes[offset..<(offset + length)])
    }

    /// Keeps `path` for `inode` when `budget` allows; false when it did not.
    mutating func keep(_ path: [UInt8], for inode: UInt32, linksCount: UInt16, budget: inout WalkBudget) -> Bool {
        let cost = path.count + Self.overhead
        // A path is at most 2048 levels of 255-byte names plus slashes.
        guard path.count < 1 << 20 else { return false }
        if linksCount <= 1 {
            guard singlyLinkedBytes + cost <= budget.limit / 4 else { return false }
        }
        guard budget.take(cost) else { return false }
        if linksCount <= 1 { singlyLinkedBytes += cost }
        index[inode] = UInt64(bytes.count) << 20 | UInt64(path.count)
        bytes.append(contentsOf: path)
        return true
    }
}

extension Ext4Filesystem {
    /// Deepest directory nesting walked; a path deeper than this cannot
    /// be created on Linux anyway (PATH_MAX).
    public static let maxDepth = 2048

    /// Finds `path` (components separated by `/`, a leading `/` optional)
    /// without following symbolic links.
    public func lookup(_ path: String) throws(QBError) -> (inode: Inode, path: [UInt8]) {
        var current = try inode(Self.rootInode)
        var components: [[UInt8]] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            let name = Array(part.utf8)
            if name == [0x2E] { continue }
            guard name != [0x2E, 0x2E] else { throw QBError(.usage, "'..' is not allowed in a path", subject: path) }
            guard current.kind == .directory else {
                throw QBError(.usage, "not a directory: /\(components.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/"))", subject: path)
            }
            var stream = try DirectoryStream(self, current)
            var damage: QBError?
            var found: DirectoryEntry?
            while let entry = try stream.next(self, damaged: { damage = damage ?? $0 }) {
                if entry.name == name { found = entry; break }
            }
            guard let found else {
                // The name may be in a block that could not be read.
                if let damage { throw damage.about(path) }
                throw QBError(.usage, "not found in the filesystem", subject: path)
            }
            current = try inode(found.inode)
            components.append(name)
        }
        return (current, Array(components.joined(separator: [0x2F])))
    }

    /// Whether the inode's data is found through a block map or extent
    /// tree (and so has blocks to claim).
    private func hasMappedData(_ inode: Inode) -> Bool {
        guard !inode.hasInlineData else { return false }
        switch inode.kind {
        case .regular, .directory: return true
        case .symbolicLink: return inode.size >= UInt64(inode.blockArea.count)
        default: return false
        }
    }

    /// Walks the trees below `roots` (all of the filesystem when empty),
    /// parents before children, calling `visit` for each file. A file or
    /// directory that cannot be read goes to `damaged` and is skipped.
    /// `visit` returns whether it used the file (a hard link's later names
    /// point at the first name that was used); an error it throws ends
    /// the walk.
    ///
    /// Every inode is taken once: a directory met again (a cycle, or a
    /// hard-linked directory) is not entered again; any other file met
    /// again is a hard link to its first name, whatever its link count
    /// says. Every block is claimed once: a file that maps a block an
    /// earlier one mapped is skipped. So the walk's work and output are
    /// bounded by the filesystem's size, and what it holds by
    /// `options.walkMemoryBytes`.
    public func walk(roots: [String], visit: (FileNode) throws(QBError) -> Bool,
                     damaged: (FileProblem) -> Void) throws(QBError) {
        let claims = BlockClaims(dataMayBeShared: superblock.features.readOnlyCompatible.contains(.sharedBlocks))
        var met = SparseBitmap()
        var firstNames = FirstNames()
        var budget = WalkBudget(limit: options.walkMemoryBytes)
        struct Frame { var path: [UInt8]; var stream: DirectoryStream; var charge: Int }
        var stack: [Frame] = []

        func report(_ path: [UInt8], _ inode: UInt32, _ error: QBError) {
            damaged(FileProblem(path: String(decoding: path, as: UTF8.self), inode: inode, error: error))
        }

        func handle(_ inode: Inode, _ path: [UInt8]) throws(QBError) {
            guard met.insert(UInt64(inode.number)) else {
                if inode.kind == .directory {
                    report(path, inode.number, QBError(.malformed, "directory already met elsewhere (a directory cycle or a hard-linked directory); not entered"))
                } else if let first = firstNames[inode.number] {
                    _ = try visit(FileNode(path: path, inode: inode, linkTarget: [], hardLinkTo: first))
                } else {
                    report(path, inode.number, QBError(.malformed, "another name of inode \(inode.number), whose first name was not extracted or not kept; not extracted again"))
                }
                return
            }
            if inode.kind == .directory {
                guard stack.count < Self.maxDepth else {
                    report(path, inode.number, QBError(.limitExceeded, "directories nested deeper than \(Self.maxDepth)"))
                    return
                }
                if !path.isEmpty { _ = try visit(FileNode(path: path, inode: inode, linkTarget: [], hardLinkTo: nil)) }
                if inode.isEncrypted {
                    report(path, inode.number, QBError(.unsupported, "encrypted directory (fscrypt): its files are not listed or extracted"))
                    return
                }
                let stream: DirectoryStream
                do {
                    stream = try DirectoryStream(self, inode, claiming: claims)
                } catch {
                    report(path, inode.number, error)
                    return
                }
                // One block, the runs, the path and the frame itself.
                let charge = stream.heldBytes + blockSize + path.count + 512
                guard budget.take(charge) else {
                    report(path, inode.number, budget.exhausted("this directory is not entered", hint: options.budgetHint))
                    return
                }
                stack.append(Frame(path: path, stream: stream, charge: charge))
                return
            }
            let file: FileNode
            do throws(QBError) {
                if hasMappedData(inode) { try forEachRun(of: inode, claiming: claims) { _ in } }
                var node = FileNode(path: path, inode: inode, linkTarget: [], hardLinkTo: nil)
                if inode.kind == .symbolicLink { node.linkTarget = try symlinkTarget(of: inode) }
                file = node
            } catch {
                report(path, inode.number, error)
                return
            }
            guard try visit(file) else { return }
            if !firstNames.keep(path, for: inode.number, linksCount: inode.linksCount, budget: &budget) && inode.linksCount > 1 {
                report(path, inode.number, budget.exhausted("the name of this hard-linked file is not kept; its other names are not extracted", hint: options.budgetHint))
            }
        }

        var starts: [(Inode, [UInt8])] = []
        if roots.isEmpty {
            starts = [(try inode(Self.rootInode), [])]
        } else {
            for root in roots {
                let found = try lookup(root)
                starts.append((found.inode, found.path))
            }
        }
        for (inode, path) in starts {
            try handle(inode, path)
            while !stack.isEmpty {
                let top = stack.count - 1
                let parent = stack[top].path, parentInode = stack[top].stream.inode.number
                guard let entry = try stack[top].stream.next(self, damaged: { report(parent, parentInode, $0) }) else {
                    budget.give(stack[top].charge)
                    stack.removeLast()
                    continue
                }
                let childPath = parent.isEmpty ? entry.name : parent + [0x2F] + entry.name
                guard !entry.name.isEmpty, !entry.name.contains(0x2F), !entry.name.contains(0) else {
                    report(childPath, entry.inode, QBError(.malformed, "invalid file name in directory"))
                    continue
                }
                let child: Inode
                do {
                    child = try self.inode(entry.inode)
                } catch {
                    report(childPath, entry.inode, error)
                    continue
                }
                try handle(child, childPath)
            }
        }
    }
}
