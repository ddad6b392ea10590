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
            guard let entry = try directoryEntries(of: current).first(where: { $0.name == name }) else {
                throw QBError(.usage, "not found in the filesystem", subject: path)
            }
            current = try inode(entry.inode)
            components.append(name)
        }
        return (current, Array(components.joined(separator: [0x2F])))
    }

    private func fileNode(_ inode: Inode, _ path: [UInt8], firstName: [UInt8]?) throws(QBError) -> FileNode {
        var node = FileNode(path: path, inode: inode, linkTarget: [], hardLinkTo: firstName)
        if inode.kind == .symbolicLink { node.linkTarget = try symlinkTarget(of: inode) }
        return node
    }

    /// Walks the trees below `roots` (all of the filesystem when empty),
    /// parents before children, calling `visit` for each file. A file or
    /// directory that cannot be read goes to `damaged` and is skipped.
    /// `visit` returns whether it used the file (a hard link's later names
    /// point at the first name that was used); an error it throws ends
    /// the walk. Directory cycles are cut: a directory inode is entered
    /// once.
    public func walk(roots: [String], visit: (FileNode) throws(QBError) -> Bool,
                     damaged: (FileProblem) -> Void) throws(QBError) {
        var firstNames: [UInt32: [UInt8]] = [:]
        var entered = Set<UInt32>()
        struct Frame { var path: [UInt8]; var entries: [DirectoryEntry]; var next: Int }
        var stack: [Frame] = []

        func handle(_ inode: Inode, _ path: [UInt8]) throws(QBError) {
            let display = String(decoding: path, as: UTF8.self)
            let file: FileNode
            switch Result(catching: { () throws(QBError) -> FileNode in
                try fileNode(inode, path, firstName: inode.kind != .directory && inode.linksCount > 1 ? firstNames[inode.number] : nil)
            }) {
            case .success(let made): file = made
            case .failure(let error):
                damaged(FileProblem(path: display, inode: inode.number, error: error))
                return
            }
            if inode.kind == .directory {
                guard entered.insert(inode.number).inserted else {
                    damaged(FileProblem(path: display, inode: inode.number,
                                        error: QBError(.malformed, "directory already met elsewhere (a directory cycle or a hard-linked directory); not entered")))
                    return
                }
                guard stack.count < Self.maxDepth else {
                    damaged(FileProblem(path: display, inode: inode.number, error: QBError(.limitExceeded, "directories nested deeper than \(Self.maxDepth)")))
                    return
                }
                if !path.isEmpty { _ = try visit(file) }
                if inode.isEncrypted {
                    damaged(FileProblem(path: display, inode: inode.number,
                                        error: QBError(.unsupported, "encrypted directory (fscrypt): its files are not listed or extracted")))
                    return
                }
                do {
                    let entries = try directoryEntries(of: inode)
                    stack.append(Frame(path: path, entries: entries, next: 0))
                } catch {
                    damaged(FileProblem(path: display, inode: inode.number, error: error))
                }
                return
            }
            if try visit(file), file.hardLinkTo == nil, inode.linksCount > 1 {
                firstNames[inode.number] = path
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
                guard stack[top].next < stack[top].entries.count else { stack.removeLast(); continue }
                let entry = stack[top].entries[stack[top].next]
                stack[top].next += 1
                let parent = stack[top].path
                let childPath = parent.isEmpty ? entry.name : parent + [0x2F] + entry.name
                let display = String(decoding: childPath, as: UTF8.self)
                guard !entry.name.isEmpty, !entry.name.contains(0x2F), !entry.name.contains(0) else {
                    damaged(FileProblem(path: display, inode: entry.inode, error: QBError(.malformed, "invalid file name in directory")))
                    continue
                }
                let child: Inode
                do {
                    child = try self.inode(entry.inode)
                } catch {
                    damaged(FileProblem(path: display, inode: entry.inode, error: error))
                    continue
                }
                try handle(child, childPath)
            }
        }
    }
}
