#if canImport(Glibc)
import Glibc
#endif

/// Extracts members into one target directory, confined to it.
///
/// - Names must be relative without `..` (`MemberPath`); otherwise `.unsafe`.
/// - Every directory on the way is opened with `openat(…, O_NOFOLLOW |
///   O_DIRECTORY)` relative to the previous one, starting at the target's
///   descriptor, so a symbolic link — planted by an earlier member or
///   already in the target — can never redirect a write (`.unsafe`).
/// - Symbolic links are created as stored and never followed; hard-link
///   targets must name a member inside the target (same rules).
/// - A regular file is written under a temporary name (`.qb-tmp-…`) in its
///   directory and renamed only after all its data was read; on any error the
///   temporary file is removed. Sparse files get their holes by seeking and a
///   final `ftruncate` to the logical size.
/// - No ownership change unless asked; setuid/setgid/sticky dropped unless
///   asked. Devices and FIFOs are not created: a warning is returned.
public final class TarExtractor {
    public struct Options: Sendable {
        /// Keep setuid, setgid and sticky bits.
        public var keepSpecialBits: Bool
        /// chown to the stored uid/gid.
        public var preserveOwnership: Bool
        /// Set the stored modification times.
        public var setModificationTimes: Bool
        /// Create FIFOs, and devices where the process may (qb-fs);
        /// otherwise they are only reported (qb-untar).
        public var createSpecialFiles: Bool

        public init(keepSpecialBits: Bool = false, preserveOwnership: Bool = false, setModificationTimes: Bool = true,
                    createSpecialFiles: Bool = false) {
            self.keepSpecialBits = keepSpecialBits
            self.preserveOwnership = preserveOwnership
            self.setModificationTimes = setModificationTimes
            self.createSpecialFiles = createSpecialFiles
        }
    }

    private let root: Int32
    private let rootPath: String
    private let options: Options
    /// Directory modes and times are applied at the end, since creating
    /// entries inside a directory changes its mtime (and a read-only mode
    /// would stop the extraction).
    private var directoryFixups: [(path: MemberPath, mode: UInt32, mtime: timespec)] = []
    private var cachedParent: (components: [[UInt8]], fd: Int32)?
    private let temporaryPrefix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    private var temporaryCounter: UInt64 = 0

    /// Opens the target directory, which must exist.
    public init(targetDirectory: String, options: Options = Options()) throws(QBError) {
        let fd = try systemCall("cannot open target directory", targetDirectory) {
            Int(open(targetDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC))
        }
        root = Int32(fd)
        rootPath = targetDirectory
        self.options = options
    }

    deinit {
        if let cached = cachedParent { close(cached.fd) }
        close(root)
    }

    /// Extracts the reader's current member (`entry`, just returned by
    /// `next()`), reading its data. Returns warnings about things not
    /// restored (devices, FIFOs, unknown types). Throws `.unsafe` for a
    /// member that would write outside the target; nothing is created for it.
    @discardableResult
    public func extract(_ entry: TarEntry, from reader: TarReader) throws(QBError) -> [String] {
        try extract(entry) { (fd: Int32, name: String) throws(QBError) in
            while try reader.readFragment({ (offset: Int64, bytes: RawSpan) throws(QBError) in
                try bytes.withUnsafeBytes { (raw) throws(QBError) in try writeAll(fd, raw, at: offset, name) }
            }) {}
        }
    }

    /// Extracts `entry`, whose regular-file data `contents` writes into the
    /// open temporary file it is given (with the member's display name for
    /// messages) at the entry's logical offsets; holes are left unwritten.
    /// Everything else is as `extract(_:from:)`.
    @discardableResult
    public func extract(_ entry: TarEntry, contents: (Int32, String) throws(QBError) -> Void) throws(QBError) -> [String] {
        let path = try MemberPath(entry.path)
        let name = entry.name
        if path.components.isEmpty {
            // `./` — the target itself; nothing to create.
            return []
        }
        switch entry.kind {
        case .directory:
            let parent = try openParent(path, create: true, member: name)
            defer { release(parent) }
            let last = cString(path.components.last!)
            if mkdirat(parent, last, 0o700) != 0 {
                let code = errno
                guard code == EEXIST else { throw ioError(code, "cannot create directory", name) }
                guard try kindAt(parent, last) == S_IFDIR else {
                    throw QBError(.unsafe, "refusing to replace an existing non-directory with a directory", subject: name,
                                  hint: "a symbolic link or file is in the way")
                }
            }
            directoryFixups.append((path, maskedMode(entry.mode), Self.time(entry)))
            return []
        case .regular:
            try writeRegular(entry, path: path, contents: contents)
            return []
        case .symbolicLink:
            guard !entry.linkTarget.isEmpty else { throw QBError(.malformed, "symbolic link with an empty target", subject: name) }
            let parent = try openParent(path, create: true, member: name)
            defer { release(parent) }
            try placeAtomically(parent: parent, name: path.components.last!, member: name) { (tmp: [CChar]) throws(QBError) in
                let target = cString(entry.linkTarget)
                try systemCall("cannot create symbolic link", name) { Int(symlinkat(target, parent, tmp)) }
                if options.setModificationTimes { setTimes(parent, tmp, Self.time(entry)) }
            }
            return []
        case .hardLink:
            let targetPath: MemberPath
            do {
                targetPath = try MemberPath(entry.linkTarget, what: "hard link target")
            } catch {
                throw QBError(.unsafe, "refusing hard link to a target outside the extraction directory", subject: name,
                              hint: "link target \(entry.linkName)")
            }
            guard !targetPath.components.isEmpty else {
                throw QBError(.unsafe, "refusing hard link to the extraction directory", subject: name)
            }
            let targetParent = try openParent(targetPath, create: false, member: name, cache: false)
            defer { close(targetParent) }
            let targetLast = cString(targetPath.components.last!)
            guard try kindAt(targetParent, targetLast) != nil else {
                throw QBError(.malformed, "hard link to a member not extracted", subject: name, hint: "link target \(entry.linkName)")
            }
            let parent = try openParent(path, create: true, member: name)
            defer { release(parent) }
            try placeAtomically(parent: parent, name: path.components.last!, member: name) { (tmp: [CChar]) throws(QBError) in
                // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
                try systemCall("cannot create hard link", name) { Int(linkat(targetParent, targetLast, parent, tmp, 0)) }
            }
            return []
        case .characterDevice, .blockDevice:
            guard options.createSpecialFiles else { return ["\(name): device not created"] }
            let type = entry.kind == .characterDevice ? S_IFCHR : S_IFBLK
            let device = Self.deviceNumber(major: UInt64(truncatingIfNeeded: entry.deviceMajor), minor: UInt64(truncatingIfNeeded: entry.deviceMinor))
            return try makeNode(entry, path: path, mode: type, device: device, what: "device")
        case .fifo:
            guard options.createSpecialFiles else { return ["\(name): FIFO not created"] }
            return try makeNode(entry, path: path, mode: S_IFIFO, device: 0, what: "FIFO")
        case .other(let type):
            return ["\(name): unknown member type '\(Character(Unicode.Scalar(type)))' skipped"]
        }
    }

    /// Applies the deferred directory modes and times. Call once after the
    /// last member.
    public func finish() throws(QBError) {
        for fix in directoryFixups.reversed() {
            let fd = try openDirectory(fix.path.components, create: false, member: fix.path.string)
            defer { close(fd) }
            fchmod(fd, mode_t(fix.mode))
            if options.setModificationTimes {
                var times = [fix.mtime, fix.mtime]
                futimens(fd, &times)
            }
        }
        directoryFixups = []
    }

    // MARK: - Regular files

    /// mknod(2) for a device or FIFO; without the privilege to make it,
    /// a warning, as tar gives.
    private func makeNode(_ entry: TarEntry, path: MemberPath, mode: mode_t, device: dev_t, what: String) throws(QBError) -> [String] {
        let name = entry.name
        let parent = try openParent(path, create: true, member: name)
        defer { release(parent) }
        var refused = false
        try placeAtomically(parent: parent, name: path.components.last!, member: name) { (tmp: [CChar]) throws(QBError) in
            if mknodat(parent, tmp, mode | mode_t(maskedMode(entry.mode)), device) != 0 {
                let code = errno
                if code == EPERM { refused = true; return }
                throw ioError(code, "cannot create \(what)", name)
            }
            if options.preserveOwnership { fchownat(parent, tmp, uid_t(truncatingIfNeeded: entry.uid), gid_t(truncatingIfNeeded: entry.gid), AT_SYMLINK_NOFOLLOW) }
            if options.setModificationTimes { setTimes(parent, tmp, Self.time(entry)) }
        }
        return refused ? ["\(name): \(what) not created (no privilege)"] : []
    }

    /// glibc's makedev(3) encoding, a macro Swift cannot call.
    private static func deviceNumber(major: UInt64, minor: UInt64) -> dev_t {
        dev_t((major & 0xFFF) << 8 | (major & ~0xFFF) << 32 | (minor & 0xFF) | (minor & ~0xFF) << 12)
    }

    private func writeRegular(_ entry: TarEntry, path: MemberPath, contents: (Int32, String) throws(QBError) -> Void) throws(QBError) {
        let name = entry.name
        let parent = try openParent(path, create: true, member: name)
        defer { release(parent) }
        let finalName = cString(path.components.last!)
        if let kind = try kindAt(parent, finalName), kind == S_IFDIR {
            throw QBError(.unsafe, "refusing to replace a directory with a file", subject: name)
        }
        let (fd, tmp, registration) = try createTemporary(in: parent, member: name)
        defer { InProgressFiles.remove(registration) }
        var closed = false
        do throws(QBError) {
            try contents(fd, name)
            try finishContents(fd, entry, name)
            closed = true
            try closeChecked(fd, name)
            try rename(from: parent, tmp, to: parent, finalName, member: name)
        } catch {
            if !closed { close(fd) }
            unlinkat(parent, tmp, 0)
            throw error
        }
    }

    /// Size (holes at the end: only the size says where the file ends),
    /// owner, mode and times of a regular file whose data is written.
    private func finishContents(_ fd: Int32, _ entry: TarEntry, _ name: String) throws(QBError) {
        try systemCall("cannot set file size", name) { Int(ftruncate(fd, off_t(entry.size))) }
        if options.preserveOwnership {
            try systemCall("cannot change owner", name) { Int(fchown(fd, uid_t(truncatingIfNeeded: entry.uid), gid_t(truncatingIfNeeded: entry.gid))) }
        }
        try systemCall("cannot set mode", name) { Int(fchmod(fd, mode_t(maskedMode(entry.mode)))) }
        if options.setModificationTimes {
            var times = [Self.time(entry), Self.time(entry)]
            try systemCall("cannot set times", name) { Int(futimens(fd, &times)) }
        }
    }

    /// close(2), whose failure is a write error (NFS and others report
    /// them there).
    private func closeChecked(_ fd: Int32, _ name: String) throws(QBError) {
        if close(fd) != 0 { throw ioError(errno, "write error", name) }
    }

    private func rename(from directory: Int32, _ tmp: [CChar], to parent: Int32, _ finalName: [CChar], member: String) throws(QBError) {
        if renameat(directory, tmp, parent, finalName) != 0 {
            throw ioError(errno, "cannot rename into place", member)
        }
    }

    // MARK: - Files written before their place is known

    /// A regular file whose data is written before its name is (a
    /// filesystem read as it passes in a backup: its files' data comes in
    /// disk order, their names later). It lives under a temporary name in
    /// the target directory itself, registered for removal on a signal,
    /// until `place` renames it into its directory or `discard` removes it.
    public final class DetachedFile {
        fileprivate let temporary: [CChar]
        fileprivate let registration: UInt64
        fileprivate var fd: Int32
        fileprivate var placed = false

        fileprivate init(temporary: [CChar], registration: UInt64, fd: Int32) {
            self.temporary = temporary
            self.registration = registration
            self.fd = fd
        }
    }

    /// A new detached file, open for writing.
    public func createDetached(member: String) throws(QBError) -> DetachedFile {
        let (fd, tmp, registration) = try createTemporary(in: root, member: member)
        return DetachedFile(temporary: tmp, registration: registration, fd: fd)
    }

    /// Writes `bytes` at `offset` of `file`, opening it again if it was closed.
    public func write(_ file: DetachedFile, at offset: Int64, _ bytes: UnsafeRawBufferPointer, member: String) throws(QBError) {
        if file.fd < 0 {
            file.fd = Int32(try systemCall("cannot open file", member) {
                Int(openat(root, file.temporary, O_WRONLY | O_NOFOLLOW | O_CLOEXEC))
            })
        }
        try writeAll(file.fd, bytes, at: offset, member)
    }

    /// Closes the file's descriptor (it is opened again by the next write):
    /// a filesystem's files can be many more than a process's descriptors.
    public func closeDescriptor(_ file: DetachedFile, member: String) throws(QBError) {
        guard file.fd >= 0 else { return }
        defer { file.fd = -1 }
        try closeChecked(file.fd, member)
    }

    /// Gives `file` its size, mode and times from `entry` and renames it to
    /// `entry`'s path, confined as every extraction is.
    public func place(_ file: DetachedFile, as entry: TarEntry) throws(QBError) {
        let name = entry.name
        let path = try MemberPath(entry.path)
        guard !path.components.isEmpty, entry.kind == .regular else {
            throw QBError(.internalError, "a detached file placed as something else than a regular file", subject: name)
        }
        let parent = try openParent(path, create: true, member: name)
        defer { release(parent) }
        let finalName = cString(path.components.last!)
        if let kind = try kindAt(parent, finalName), kind == S_IFDIR {
            throw QBError(.unsafe, "refusing to replace a directory with a file", subject: name)
        }
        if file.fd < 0 {
            file.fd = Int32(try systemCall("cannot open file", name) { Int(openat(root, file.temporary, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) })
        }
        try finishContents(file.fd, entry, name)
        try closeDescriptor(file, member: name)
        try rename(from: root, file.temporary, to: parent, finalName, member: name)
        file.placed = true
        InProgressFiles.remove(file.registration)
    }

    /// Removes a file that will not be placed.
    public func discard(_ file: DetachedFile) {
        guard !file.placed else { return }
        if file.fd >= 0 { close(file.fd); file.fd = -1 }
        unlinkat(root, file.temporary, 0)
        file.placed = true
        InProgressFiles.remove(file.registration)
    }

    /// A new temporary file, registered with InProgressFiles as it is made.
    private func createTemporary(in parent: Int32, member: String) throws(QBError) -> (Int32, [CChar], UInt64) {
        for _ in 0..<16 {
            let tmp = temporaryName()
            let made = InProgressFiles.create(directory: parent, name: tmp) {
                openat(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            }
            if let token = made.token { return (made.fd, tmp, token) }
            let code = made.errno
            if code == EEXIST || code == EINTR { continue }
            throw ioError(code, "cannot create file", member)
        }
        throw ioError(EEXIST, "cannot create temporary file", member)
    }

    /// Creates something under a temporary name with `make`, then renames it
    /// over `name` (replacing a file or link there, never following it).
    private func placeAtomically(parent: Int32, name: [UInt8], member: String,
                                 _ make: ([CChar]) throws(QBError) -> Void) throws(QBError) {
        let finalName = cString(name)
        if let kind = try kindAt(parent, finalName), kind == S_IFDIR {
            throw QBError(.unsafe, "refusing to replace a directory", subject: member)
        }
        var lastError: QBError?
        for _ in 0..<16 {
            let tmp = temporaryName()
            do {
                try make(tmp)
            } catch {
                if case .io(let code) = error.kind, code == EEXIST { lastError = error; continue }
                throw error
            }
            if renameat(parent, tmp, parent, finalName) != 0 {
                let code = errno
                unlinkat(parent, tmp, 0)
                throw ioError(code, "cannot rename into place", member)
            }
            return
        }
        throw lastError ?? ioError(EEXIST, "cannot create temporary name", member)
    }

    // MARK: - Confined directory walk

    /// Opens the directory that holds `path`. Members come grouped by
    /// directory, so the last one opened is kept (`cache`) and lent again
    /// while the next members stay in it: a directory this extractor opened
    /// cannot become a link later, since a directory is never replaced.
    /// Give what it returns back with `release`.
    private func openParent(_ path: MemberPath, create: Bool, member: String, cache: Bool = true) throws(QBError) -> Int32 {
        let components = Array(path.components.dropLast())
        guard cache else { return try openDirectory(components, create: create, member: member) }
        if let cached = cachedParent, cached.components == components { return cached.fd }
        let fd = try openDirectory(components, create: create, member: member)
        if let old = cachedParent { close(old.fd) }
        cachedParent = (components, fd)
        return fd
    }

    /// Closes a descriptor from `openParent` unless it is the one kept.
    private func release(_ fd: Int32) {
        if fd != cachedParent?.fd { close(fd) }
    }

    /// `.qb-tmp-` and a random prefix chosen once, then a counter: unique
    /// enough for O_EXCL to settle the rest, without a getrandom per file.
    private func temporaryName() -> [CChar] {
        temporaryCounter += 1
        return cString(Array(".qb-tmp-\(temporaryPrefix)-\(temporaryCounter)".utf8))
    }

    /// Opens the directory `components` below the root, one component at a
    /// time with O_NOFOLLOW, creating missing ones when asked.
    private func openDirectory(_ components: [[UInt8]], create: Bool, member: String) throws(QBError) -> Int32 {
        var fd = dup(root)
        guard fd >= 0 else { throw ioError(errno, "cannot open target directory", rootPath) }
        for component in components {
            let c = cString(component)
            var next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT && create {
                if mkdirat(fd, c, 0o755) != 0 && errno != EEXIST {
                    let code = errno
                    close(fd)
                    throw ioError(code, "cannot create directory", member)
                }
                next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if next < 0 {
                let code = errno
                let kind = try? kindAt(fd, c)
                close(fd)
                if code == ELOOP || kind == S_IFLNK {
                    throw QBError(.unsafe, "refusing to write through a symbolic link", subject: member,
                                  hint: "'\(String(decoding: component, as: UTF8.self))' is a symbolic link")
                }
                if code == ENOTDIR {
                    throw QBError(.unsafe, "refusing to write below something that is not a directory", subject: member)
                }
                throw ioError(code, "cannot open directory", member)
            }
            close(fd)
            fd = next
        }
        return fd
    }

    /// The file type at `name` in `dir` without following a link, or nil.
    private func kindAt(_ dir: Int32, _ name: [CChar]) throws(QBError) -> mode_t? {
        var st = stat()
        if fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw ioError(errno, "cannot inspect", name.stringBeforeNUL)
        }
        return st.st_mode & S_IFMT
    }

    private static func time(_ entry: TarEntry) -> timespec {
        timespec(tv_sec: Int(entry.modificationTime), tv_nsec: entry.modificationNanoseconds)
    }

    private func setTimes(_ dir: Int32, _ name: [CChar], _ mtime: timespec) {
        var times = [mtime, mtime]
        utimensat(dir, name, &times, AT_SYMLINK_NOFOLLOW)
    }

    private func maskedMode(_ mode: UInt32) -> UInt32 {
        options.keepSpecialBits ? mode & 0o7777 : mode & 0o777
    }

    private func cString(_ bytes: [UInt8]) -> [CChar] {
        bytes.map { CChar(bitPattern: $0) } + [0]
    }

    private func ioError(_ code: Int32, _ what: String, _ subject: String) -> QBError {
        QBError(.io(code), "\(what): \(String(cString: strerror(code)))", subject: subject)
    }
}
