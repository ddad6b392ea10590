#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A volume image that is not on disk but passes by, in order, in a
/// backup's stream — once, or again in a later pass over the same backup
/// file. What the filesystem reader needs of it is kept as it passes, in
/// 4 KiB pages: in memory up to a budget, then in a temporary file that is
/// unlinked as soon as it is made, so that nothing is left behind. Reading
/// a page that was not kept records it as missing and throws: a later pass
/// keeps it.
///
/// Pages that passed with no data in them (the image's holes: a restored
/// image is sparse) read as zeros once a whole pass has been seen.
public final class StreamedImage: ImageBytes, @unchecked Sendable {
    // @unchecked: every mutable field is in `state`, behind its lock; the
    // spill file's descriptor is only read and written with pread/pwrite.

    public static let pageSize = 4096
    public let path: String
    public let size: Int64

    private struct State: ~Copyable {
        var pages: [UInt64: [UInt8]] = [:]
        var spilled: [UInt64: Int64] = [:]
        var spillEnd: Int64 = 0
        var memoryBytes = 0
        /// Pages with data in them, seen in any pass.
        var dataPages = SparseBitmap()
        /// A whole pass was seen: a page without data is a hole.
        var complete = false
        /// Pages to keep when they pass.
        var wanted = SparseBitmap()
        /// Pages read while not kept, since `takeMissing`.
        var missing: [UInt64] = []
        var misses = 0
        /// The page being assembled from the current pass's fragments.
        var assembling: (page: UInt64, bytes: [UInt8], hasData: Bool)?
        var passes = 0
        /// Where the current pass is: everything before has passed.
        var position: Int64 = 0
    }

    private let state = Mutex(State())
    private let memoryBudget: Int
    private let spillDirectory: String
    private var spillDescriptor: Int32 = -1
    /// Called on the feeding thread whenever the stream moves on: every
    /// page below the one given is now as this pass leaves it (kept, a
    /// hole, or passed without being wanted).
    var settled: ((UInt64) -> Void)?

    /// `size` bytes; pages beyond `memoryBudget` go to a temporary file in
    /// `spillDirectory` (beside the output).
    public init(path: String, size: Int64, memoryBudget: Int, spillDirectory: String) {
        self.path = path
        self.size = size
        self.memoryBudget = memoryBudget
        self.spillDirectory = spillDirectory
    }

    deinit { if spillDescriptor >= 0 { close(spillDescriptor) } }

    public var passes: Int { state.withLock { $0.passes } }
    /// Reads of pages not kept, ever: a reader compares it before and after
    /// a step to learn whether the step saw the whole of what it needed.
    public var misses: Int { state.withLock { $0.misses } }
    /// Bytes of kept pages: in memory, and in the spill file.
    public var keptBytes: (memory: Int, spilled: Int64) { state.withLock { ($0.memoryBytes, $0.spillEnd) } }

    /// `count` bytes at `offset` cut at page boundaries: for each piece, its
    /// page, where in the page it starts, how far into the bytes it starts,
    /// and its length.
    static func pieces(_ offset: Int64, _ count: Int) -> [(page: UInt64, within: Int, done: Int, count: Int)] {
        var pieces: [(page: UInt64, within: Int, done: Int, count: Int)] = []
        var done = 0
        while done < count {
            let at = offset + Int64(done)
            let within = Int(at % Int64(pageSize))
            let n = min(pageSize - within, count - done)
            pieces.append((UInt64(at) / UInt64(pageSize), within, done, n))
            done += n
        }
        return pieces
    }

    static func pages(_ offset: Int64, _ count: Int) -> Range<UInt64> {
        guard count > 0 else { return 0..<0 }
        let first = UInt64(offset) / UInt64(pageSize), last = (UInt64(offset) + UInt64(count) - 1) / UInt64(pageSize)
        return first..<(last + 1)
    }

    /// Keeps the pages holding `count` bytes at `offset` when they pass.
    /// Returns whether all of them are already kept (or known holes).
    @discardableResult
    public func want(_ offset: Int64, count: Int) -> Bool {
        let range = Self.pages(offset, count)
        return state.withLock { s in
            var all = true
            for page in range where !Self.available(page, s) {
                _ = s.wanted.insert(page)
                all = false
            }
            return all
        }
    }

    /// Whether the page can be read now.
    private static func available(_ page: UInt64, _ s: borrowing State) -> Bool {
        s.pages[page] != nil || s.spilled[page] != nil || isHole(page, s)
    }

    /// A page the stream passed without data: a hole, read as zeros. Known
    /// for every page once a whole pass was seen, and for the pages behind
    /// the stream in the current pass.
    private static func isHole(_ page: UInt64, _ s: borrowing State) -> Bool {
        guard !s.dataPages.contains(page) else { return false }
        if s.complete { return true }
        let end = (page + 1) * UInt64(pageSize)
        return end <= UInt64(max(0, s.position)) && s.assembling?.page != page
    }

    /// Whether the page, not available, has passed in the current pass:
    /// only a later pass can bring it.
    public func passed(_ offset: Int64) -> Bool {
        state.withLock { $0.position > offset }
    }

    /// Pages read while not kept since the last call, in the order met.
    public func takeMissing() -> [UInt64] {
        state.withLock { s in
            defer { s.missing.removeAll() }
            return s.missing
        }
    }

    // MARK: - Reading

    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(QBError) {
        guard offset >= 0, Int64(buffer.count) <= size, offset <= size - Int64(buffer.count) else {
            throw QBError(.truncated, "read of \(buffer.count) bytes at offset \(offset) is past the end of the image (\(size) bytes)", subject: path)
        }
        var lacking: [UInt64] = []
        for (page, within, done, n) in Self.pieces(offset, buffer.count) {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
            let found: Int64? = try state.withLock { (s) throws(QBError) -> Int64? in
                if let bytes = s.pages[page] {
                    bytes.withUnsafeBytes { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[within..<(within + n)])) }
                    return nil
                }
                if let slot = s.spilled[page] { return slot }
                if Self.isHole(page, s) {
                    target.initializeMemory(as: UInt8.self, repeating: 0)
                    return nil
                }
                return -1
            }
            if let slot = found {
                if slot < 0 {
                    lacking.append(page)
                } else {
                    try readSpill(at: slot + Int64(within), into: target)
                }
            }
        }
        if !lacking.isEmpty {
            state.withLock { s in
                s.missing.append(contentsOf: lacking)
                s.misses += lacking.count
                for page in lacking { _ = s.wanted.insert(page) }
            }
            throw QBError(.truncated, "bytes \(offset)+\(buffer.count) of the image were not kept from the backup's stream",
                          subject: path, hint: "another pass over the backup reads them")
        }
    }

    private func readSpill(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(QBError) {
        var done = 0
        while done < buffer.count {
            let n = try systemCall("read error", "the spill file") {
                pread(spillDescriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            guard n > 0 else { throw QBError(.io(EIO), "the spill file ended early", subject: spillDirectory) }
            done += n
        }
    }

    // MARK: - Passes

    /// A new pass starts at the image's first byte.
    public func beginPass() {
        state.withLock { s in
            s.passes += 1
            s.position = 0
            s.assembling = nil
        }
    }

    /// The bytes at `offset`, in increasing order within a pass; gaps are holes.
    /// A page is kept, and `pageKept` told, as soon as the stream moves past
    /// it, before the next page starts: what a kept page says is needed
    /// (a superblock's descriptors, a table's directories) can be the very
    /// next page.
    public func pass(_ offset: Int64, _ bytes: UnsafeRawBufferPointer) throws(QBError) {
        for (page, within, done, n) in Self.pieces(offset, bytes.count) {
            let piece = UnsafeRawBufferPointer(rebasing: bytes[done..<(done + n)])
            let (moved, finished) = state.withLock { s -> (Bool, (UInt64, [UInt8])?) in
                guard s.assembling?.page != page else { return (false, nil) }
                let finished = Self.finish(&s)
                // Pages between the last and this one are holes now.
                s.position = max(s.position, Int64(page) * Int64(Self.pageSize))
                return (true, finished)
            }
            if let (kept, pageBytes) = finished { try keep(kept, pageBytes) }
            if moved { settled?(page) }
            state.withLock { s in
                if s.assembling == nil {
                    let wanted = s.wanted.contains(page) && !Self.available(page, s)
                    s.assembling = (page, wanted ? [UInt8](repeating: 0, count: Self.pageSize) : [], false)
                }
                if !s.assembling!.bytes.isEmpty {
                    s.assembling!.bytes.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: within).copyMemory(from: piece.baseAddress!, byteCount: n) }
                }
                if !s.assembling!.hasData && piece.contains(where: { $0 != 0 }) { s.assembling!.hasData = true }
                s.position = offset + Int64(done + n)
            }
        }
    }

    /// Ends the pass: the last page is kept, and pages that never had data are holes.
    public func endPass() throws(QBError) {
        let finished = state.withLock { s -> (UInt64, [UInt8])? in
            let out = s.assembling == nil ? nil : Self.finish(&s)
            s.complete = true
            s.position = size
            return out
        }
        if let (page, bytes) = finished { try keep(page, bytes) }
        settled?(UInt64.max)
    }

    /// Closes the page being assembled; returns it when it is to be kept.
    private static func finish(_ s: inout State) -> (UInt64, [UInt8])? {
        guard let current = s.assembling else { return nil }
        s.assembling = nil
        if current.hasData { _ = s.dataPages.insert(current.page) }
        guard !current.bytes.isEmpty else { return nil }
        return (current.page, current.bytes)
    }

    private func keep(_ page: UInt64, _ bytes: [UInt8]) throws(QBError) {
        let inMemory = state.withLock { s -> Bool in
            guard s.memoryBytes + bytes.count <= memoryBudget else { return false }
            s.pages[page] = bytes
            s.memoryBytes += bytes.count
            return true
        }
        if inMemory { return }
        let slot = try spill(bytes)
        state.withLock { $0.spilled[page] = slot }
    }

    /// Appends a page to the spill file, made on first use and unlinked at
    /// once: it lives as long as this image and is never left behind.
    private func spill(_ bytes: [UInt8]) throws(QBError) -> Int64 {
        if spillDescriptor < 0 {
            var template = Array((spillDirectory + "/.qb-spill-XXXXXX").utf8CString)
            let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard fd >= 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
                let code = errno
                throw QBError(.io(code), "cannot make a spill file: \(String(cString: strerror(code)))", subject: spillDirectory)
            }
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
            spillDescriptor = fd
        }
        let slot = state.withLock { s -> Int64 in
            defer { s.spillEnd += Int64(bytes.count) }
            return s.spillEnd
        }
        let fd = spillDescriptor
        try bytes.span.bytes.withUnsafeBytes { (raw) throws(QBError) in try writeAll(fd, raw, at: slot, "the spill file") }
        return slot
    }
}
