/// Zeros lent to `read(into:)` for holes.
private let zeroBytes = [UInt8](repeating: 0, count: 1 << 16)

/// Reads a tar archive member by member, in the shape of Go's archive/tar:
/// `next()` returns real members with PAX (`x`, `g`) and GNU (`L`, `K`)
/// meta members applied and consumed; `read(into:)` returns a member's
/// logical bytes (holes as zeros); `readFragment(_:)` lends stored data with
/// its logical offset so an extractor can seek over holes.
///
/// Understood: v7, ustar (prefix), GNU (long names, base-256 numbers, old
/// sparse `S` with extension blocks, multi-volume `M` continuations, `V`
/// labels), PAX (path, linkpath, size, mtime, uid, gid, uname, gname and the
/// GNU sparse formats 0.0, 0.1 and 1.0).
///
/// The end is strict (FORMAT §3.2, §8.3): `next()` returns nil only after an
/// all-zero block followed by nothing but zeros to the end of the input
/// (normally the second zero block and record padding). Any other end is
/// `.truncated`. With `ignoreZeros`, zero blocks between members are
/// skipped (concatenated `tar` sessions, the outer backup stream), but the
/// input must still end after a zero block. Every error is sticky: later
/// calls throw it again.
///
/// Data nobody reads is skipped, not read, where the input can seek (a
/// regular file; DESIGN.md, "Reading less of the backup"): `next()` passes
/// over the rest of the previous member with `ByteSource.skip`, so every
/// tool that selects members gets it. Every header is still read, and a
/// skip stops at the end of the input, so a member cut short is
/// `.truncated` exactly as when it is read through. After a skip, headers
/// are read in small pieces until a member's data is read again, so that a
/// run of skipped members costs a seek and a small read each.
///
/// Where fields sit in a header block is `TarHeaderBlock`'s business, how
/// each sparse encoding lists its regions `SparseFormats`'; this class is
/// the cursor over them: buffering, volumes, the position in member data,
/// which header overrides which, and where the archive may end.
public final class TarReader {
    /// How strictly to read and how much to accept.
    public struct Options: Sendable {
        /// Skip zero blocks between members instead of treating the first
        /// pair as the end (GNU tar's `--ignore-zeros`).
        public var ignoreZeros: Bool
        public var limits: TarLimits

        public init(ignoreZeros: Bool = false, limits: TarLimits = .default) {
            self.ignoreZeros = ignoreZeros
            self.limits = limits
        }
    }

    private let options: Options
    private var input: VolumeInput
    /// Read ahead of the cursor; volume boundaries are crossed into it.
    private let buffer: IOBuffer
    private var stickyError: QBError?
    private var ended = false
    /// Set by a skip, cleared when member data is read: header reads are
    /// then `readAfterSkip` bytes, not a whole buffer.
    private var skipped = false
    /// Enough, after a skipped member of a Qubes backup, for the rest of its
    /// 10,240-byte tar record and the headers of the next member (FORMAT.md
    /// §3.1); two such reads cover a v2/v3 `.hmac` member between chunks.
    static let readAfterSkip = 16 << 10
    private var globalRecords = PAXRecords()
    /// The member last returned by `next()`, until the following call.
    private var member: MemberCursor?
    /// Bytes taken from the input so far, read or skipped.
    private var inputBytes: Int64 = 0
    /// Where in the input the last member returned by `next()` starts: its
    /// first header block (an extended header's, when it has one). Only
    /// meaningful for a reader of one input (not volumes): a later pass over
    /// a backup file seeks there to read that member again.
    public private(set) var memberOffset: Int64 = 0

    /// Where reading stands in a member's data. Stored bytes come region by
    /// region; the logical position runs ahead of them over holes when
    /// `read(into:)` produces zeros.
    private struct MemberCursor {
        let entry: TarEntry
        /// The stored regions in order; a member without a sparse map has
        /// one covering all of it (none when it is empty).
        let regions: [SparseRegion]
        var regionIndex = 0
        var offsetInRegion: Int64 = 0
        /// Stored bytes not yet read, in this volume or later ones.
        var physicalRemaining: Int64
        var paddingRemaining: Int
        /// The next logical byte `read(into:)` returns.
        var logicalPosition: Int64 = 0
        /// False once the padding after the data has been consumed.
        var inData = true

        init(entry: TarEntry, regions: [SparseRegion], dataSize: Int64) {
            self.entry = entry
            self.regions = regions
            physicalRemaining = entry.storedSize
            paddingRemaining = TarHeaderBlock.padding(after: dataSize)
        }

        var storedDataLeft: Bool { physicalRemaining > 0 && regionIndex < regions.count }

        /// Where the hole before the current region ends: the region's
        /// offset, or the end of the file after the last region.
        var holeEnd: Int64 { regionIndex < regions.count ? regions[regionIndex].offset : entry.size }

        /// Bytes of the current region not yet read.
        var leftInRegion: Int64 { regions[regionIndex].length - offsetInRegion }

        /// The logical offset of the next stored byte.
        var storedOffset: Int64 { regions[regionIndex].offset + offsetInRegion }

        /// Counts `n` stored bytes as read.
        mutating func advance(_ n: Int) {
            physicalRemaining -= Int64(n)
            offsetInRegion += Int64(n)
            logicalPosition = regions[regionIndex].offset + offsetInRegion
            if offsetInRegion == regions[regionIndex].length {
                regionIndex += 1
                offsetInRegion = 0
            }
        }
    }

    /// Reads one archive from `source`.
    public convenience init(source: ByteSource, options: Options = Options(), bufferSize: Int = IOBuffer.defaultCapacity) {
        self.init(volumes: TarVolumeList([source]), options: options, bufferSize: bufferSize)
    }

    /// Reads the volumes of a multi-volume archive as one archive. At the
    /// start of each later volume, a member in progress must continue with
    /// an `M` header whose name matches, whose size equals the stored bytes
    /// still expected, and whose offset plus size equals the member's size.
    public init(volumes: TarVolumeSequence, options: Options = Options(), bufferSize: Int = IOBuffer.defaultCapacity) {
        self.input = VolumeInput(volumes: volumes)
        self.options = options
        self.buffer = IOBuffer(capacity: max(bufferSize, 4096))
    }

    // MARK: - Public API

    /// The next real member, or nil after a proper end of archive. Skips
    /// whatever was left unread of the previous member.
    public func next() throws(QBError) -> TarEntry? {
        if let stickyError { throw stickyError }
        if ended { return nil }
        do {
            return try nextMember()
        } catch {
            stickyError = error
            throw error
        }
    }

    /// Appends up to `output.freeCapacity` logical bytes of the current
    /// member to `output`; holes read as zeros. Returns 0 at the end of the
    /// member (after its padding was consumed).
    public func read(into output: IOBuffer) throws(QBError) -> Int {
        if let stickyError { throw stickyError }
        do {
            return try readLogical(into: output)
        } catch {
            stickyError = error
            throw error
        }
    }

    /// Lends the next piece of the current member's stored data to `body`
    /// with the logical offset where it belongs; holes are never produced.
    /// Returns false at the end of the member's data. The span is valid
    /// only during the call.
    public func readFragment(_ body: (_ offset: Int64, _ bytes: RawSpan) throws(QBError) -> Void) throws(QBError) -> Bool {
        if let stickyError { throw stickyError }
        do {
            return try fragment(body)
        } catch {
            stickyError = error
            throw error
        }
    }

    // MARK: - Input

    private enum Block {
        case block([UInt8])
        case end
        case partial(allZero: Bool)
    }

    /// The volumes, read one after another.
    private struct VolumeInput {
        let volumes: TarVolumeSequence
        /// The volume being read: nil before the first is opened and after
        /// the last ended.
        private(set) var source: ByteSource?
        private var exhausted = false

        init(volumes: TarVolumeSequence) { self.volumes = volumes }

        /// The volume being read, opening the first when needed.
        mutating func current() throws(QBError) -> ByteSource? {
            if source == nil { source = try following() }
            return source
        }

        /// Moves on to the next volume; false after the last.
        mutating func advance() throws(QBError) -> Bool {
            source = try following()
            return source != nil
        }

        /// Once the sequence said it has no more, it is not asked again.
        private mutating func following() throws(QBError) -> ByteSource? {
            if exhausted { return nil }
            let volume = try volumes.nextVolume()
            if volume == nil { exhausted = true }
            return volume
        }
    }

    /// Reads one 512-byte block outside member data. Volume boundaries
    /// between blocks are crossed silently.
    private func readBlock() throws(QBError) -> Block {
        let blockSize = TarHeaderBlock.size
        while buffer.readableCount < blockSize {
            if buffer.freeCapacity < blockSize { buffer.compact() }
            guard let src = try input.current() else { break }
            let n = skipped ? try src.read(into: buffer, atMost: max(Self.readAfterSkip, blockSize)) : try src.read(into: buffer)
            inputBytes += Int64(n)
            if n > 0 { continue }
            guard try input.advance() else { break }
            // A block never spans two volumes.
            guard buffer.isEmpty else {
                throw QBError(.malformed, "volume does not end on a 512-byte block boundary", hint: "corrupt multi-volume archive")
            }
        }
        if buffer.readableCount >= blockSize {
            let block = buffer.withReadable { (span: RawSpan) -> [UInt8] in
                var b: [UInt8] = []
                b.reserveCapacity(blockSize)
                b.append(contentsOf: span.extracting(0..<blockSize))
                return b
            }
            buffer.consume(blockSize)
            return .block(block)
        }
        if buffer.isEmpty { return .end }
        let allZero = buffer.withReadable { (span: RawSpan) -> Bool in
            span.withUnsafeBytes { $0.allSatisfy { $0 == 0 } }
        }
        buffer.clear()
        return .partial(allZero: allZero)
    }

    /// Refills the empty buffer inside member data; at the end of a volume,
    /// moves to the next and checks its continuation header.
    private func refillData() throws(QBError) {
        precondition(buffer.isEmpty)
        skipped = false
        while true {
            guard let src = try input.current() else { throw truncated() }
            let n = try src.read(into: buffer)
            inputBytes += Int64(n)
            if n > 0 { return }
            guard try input.advance() else { throw truncated() }
            try readContinuationHeader()
            // Reading the header may have buffered the volume's data already.
            if !buffer.isEmpty { return }
        }
    }

    private func truncated() -> QBError {
        QBError(.truncated, "truncated archive", subject: member?.entry.name,
                hint: "the input ends inside a member; a chunk or volume may be missing")
    }

    private func readContinuationHeader() throws(QBError) {
        guard let member else { return }
        let entry = member.entry
        var longName: [UInt8]?
        while true {
            let header = try readHeaderBlock()
            if header.isAllZero { throw QBError(.malformed, "volume starts with a zero block inside a member", subject: entry.name) }
            try header.verifyChecksum()
            let type = header.typeflag
            if type == UInt8(ascii: "L") {
                longName = try readMetaData(header: header, limit: options.limits.maxNameLength, what: "long name").value
                continue
            }
            if type == UInt8(ascii: "V") { continue }
            guard type == UInt8(ascii: "M") else {
                throw QBError(.malformed, "volume does not continue the member in progress", subject: entry.name,
                              hint: "volumes out of order or one missing")
            }
            let name = longName ?? header.name
            let size = try header.size
            let offset = try header.gnuOffset
            guard name == entry.path || name == stripDotSlash(entry.path) else {
                throw QBError(.malformed, "continuation header names \(String(decoding: name, as: UTF8.self))", subject: entry.name,
                              hint: "volumes out of order or one missing")
            }
            guard size == member.physicalRemaining, offset <= Int64.max - size, offset + size == entry.size else {
                throw QBError(.malformed, "continuation header does not match the data still expected", subject: entry.name,
                              hint: "volumes out of order or one missing")
            }
            return
        }
    }

    private func stripDotSlash(_ p: [UInt8]) -> [UInt8] {
        p.starts(with: [0x2E, 0x2F]) ? Array(p.dropFirst(2)) : p
    }

    // MARK: - Member data

    /// Consumes the zeros after a member's data; `skipping` passes over
    /// them too when they are not buffered and the input can seek.
    private func consumePadding(skipping: Bool = false) throws(QBError) {
        while member!.paddingRemaining > 0 {
            if buffer.isEmpty {
                if skipping {
                    let n = try passOver(Int64(member!.paddingRemaining))
                    if n > 0 { member!.paddingRemaining -= Int(n); continue }
                }
                // Padding is always in the same volume as the data it pads.
                guard let src = try input.current() else { throw truncated() }
                let n = try src.read(into: buffer)
                inputBytes += Int64(n)
                guard n > 0 else { throw truncated() }
            }
            let n = min(member!.paddingRemaining, buffer.readableCount)
            buffer.consume(n)
            member!.paddingRemaining -= n
        }
        member!.inData = false
    }

    private func fragment(_ body: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) -> Bool {
        guard member?.inData == true else { return false }
        guard member!.storedDataLeft else {
            try consumePadding()
            return false
        }
        if buffer.isEmpty { try refillData() }
        let cursor = member!
        let n = Int(min(Int64(buffer.readableCount), cursor.physicalRemaining, cursor.leftInRegion))
        let offset = cursor.storedOffset
        try buffer.withReadable { (span: RawSpan) throws(QBError) in try body(offset, span.extracting(0..<n)) }
        buffer.consume(n)
        member!.advance(n)
        return true
    }

    private func readLogical(into output: IOBuffer) throws(QBError) -> Int {
        guard let cursor = member, cursor.inData else { return 0 }
        precondition(output.freeCapacity > 0, "no room in the output buffer")
        let holeEnd = cursor.holeEnd
        if cursor.logicalPosition < holeEnd && cursor.offsetInRegion == 0 {
            let n = Int(min(Int64(output.freeCapacity), holeEnd - cursor.logicalPosition))
            var left = n
            while left > 0 {
                let k = min(left, zeroBytes.count)
                output.append(zeroBytes[0..<k])
                left -= k
            }
            member!.logicalPosition += Int64(n)
            return n
        }
        if cursor.regionIndex >= cursor.regions.count {
            try consumePadding()
            return 0
        }
        if buffer.isEmpty { try refillData() }
        let n = Int(min(Int64(buffer.readableCount), Int64(output.freeCapacity), cursor.leftInRegion))
        buffer.withReadable { (span: RawSpan) in output.append(span.extracting(0..<n)) }
        buffer.consume(n)
        member!.advance(n)
        return n
    }

    /// Skips the rest of the current member's data and padding: what is
    /// buffered is dropped, the rest passed over where the input can seek
    /// and read through where it cannot. At the end of a volume the next
    /// one's continuation header is read and checked as when reading.
    private func skipMember() throws(QBError) {
        guard member?.inData == true else { return }
        while member!.physicalRemaining > 0 {
            if buffer.isEmpty {
                let n = try passOver(member!.physicalRemaining)
                if n > 0 { member!.physicalRemaining -= n; continue }
                try refillData()
            }
            let n = Int(min(Int64(buffer.readableCount), member!.physicalRemaining))
            buffer.consume(n)
            member!.physicalRemaining -= Int64(n)
        }
        try consumePadding(skipping: true)
    }

    /// Asks the current volume to pass over up to `count` bytes; 0 when it
    /// cannot or is at its end, and the caller reads instead.
    private func passOver(_ count: Int64) throws(QBError) -> Int64 {
        precondition(buffer.isEmpty, "skipping with bytes buffered")
        guard let src = try input.current() else { return 0 }
        let n = try src.skip(count)
        precondition(n >= 0 && n <= count, "a source skipped more than asked")
        inputBytes += n
        if n > 0 { skipped = true }
        return n
    }

    // MARK: - Headers

    /// The next whole block where the archive cannot end (meta data,
    /// sparse maps, a continuation header).
    private func readWholeBlock() throws(QBError) -> [UInt8] {
        guard case .block(let b) = try readBlock() else { throw truncated() }
        return b
    }

    private func readHeaderBlock() throws(QBError) -> TarHeaderBlock {
        TarHeaderBlock(try readWholeBlock())
    }

    /// Reads the data area of a meta member (PAX records, long name), padded
    /// blocks included, refusing sizes over `limit`.
    private func readMetaData(header: TarHeaderBlock, limit: Int, what: String) throws(QBError) -> (value: [UInt8], raw: [UInt8]) {
        let size = try header.size
        guard size <= Int64(limit) else {
            throw QBError(.limitExceeded, "\(what) of \(size) bytes is over the limit of \(limit)", hint: "corrupt or hostile archive")
        }
        var raw: [UInt8] = []
        let blocks = (Int(size) + TarHeaderBlock.size - 1) / TarHeaderBlock.size
        raw.reserveCapacity(blocks * TarHeaderBlock.size)
        for _ in 0..<blocks {
            raw.append(contentsOf: try readWholeBlock())
        }
        return (Array(raw[0..<Int(size)]), raw)
    }

    /// Reads the rest of the input after the end-of-archive blocks: only
    /// zeros may follow (record padding).
    private func drainTrailingZeros() throws(QBError) {
        while true {
            if !buffer.isEmpty {
                let zero = buffer.withReadable { (span: RawSpan) -> Bool in span.withUnsafeBytes { $0.allSatisfy { $0 == 0 } } }
                guard zero else {
                    throw QBError(.malformed, "data after the end of the archive", hint: "use --ignore-zeros for concatenated archives")
                }
                buffer.clear()
            }
            guard let src = try input.current() else { return }
            let n = try src.read(into: buffer)
            inputBytes += Int64(n)
            if n == 0 {
                guard try input.advance() else { return }
            }
        }
    }

    private func nextMember() throws(QBError) -> TarEntry? {
        if member != nil {
            try skipMember()
            member = nil
        }
        var raw: [UInt8] = []
        var records = PAXRecords()
        var longName: [UInt8]?
        var longLink: [UInt8]?
        var metaCount = 0
        var sawZero = false
        while true {
            let header: TarHeaderBlock
            switch try readBlock() {
            case .end:
                if sawZero && raw.isEmpty { ended = true; return nil }
                throw truncated()
            case .partial(let allZero):
                if sawZero && allZero && raw.isEmpty { ended = true; return nil }
                throw truncated()
            case .block(let b):
                header = TarHeaderBlock(b)
                if raw.isEmpty && !header.isAllZero {
                    memberOffset = inputBytes - Int64(buffer.readableCount) - Int64(TarHeaderBlock.size)
                }
            }
            if header.isAllZero {
                guard raw.isEmpty else {
                    throw QBError(.malformed, "zero block after an extended header", hint: "corrupt archive")
                }
                if sawZero && !options.ignoreZeros {
                    try drainTrailingZeros()
                    ended = true
                    return nil
                }
                sawZero = true
                continue
            }
            if sawZero && !options.ignoreZeros {
                throw QBError(.malformed, "a lone zero block inside the archive", hint: "concatenated archives need --ignore-zeros")
            }
            sawZero = false
            try header.verifyChecksum()
            let type = header.typeflag
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                metaCount += 1
                try checkMetaCount(metaCount)
                let (value, blocks) = try readMetaData(header: header, limit: options.limits.maxSpecialHeaderSize, what: "extended header")
                let parsed = try PAXRecords(parsing: value[...])
                if type == UInt8(ascii: "x") {
                    records.merge(parsed)
                    raw.append(contentsOf: header.bytes)
                    raw.append(contentsOf: blocks)
                } else {
                    // Global headers apply to every later member; they are not
                    // part of any one member's raw header.
                    globalRecords.merge(parsed)
                }
            case UInt8(ascii: "L"), UInt8(ascii: "K"):
                metaCount += 1
                try checkMetaCount(metaCount)
                let (value, blocks) = try readMetaData(header: header, limit: options.limits.maxNameLength, what: "long name")
                let name = TarHeaderBlock.cString(value[...])
                if type == UInt8(ascii: "L") { longName = name } else { longLink = name }
                raw.append(contentsOf: header.bytes)
                raw.append(contentsOf: blocks)
            case UInt8(ascii: "V"):
                // A volume label describes the volume, not a member.
                let size = try header.size
                guard size == 0 else { throw QBError(.malformed, "volume label with data", hint: "corrupt archive") }
                raw = []
                records = PAXRecords()
            case UInt8(ascii: "M"):
                throw QBError(.malformed, "continuation of a member from an earlier volume", subject: String(decoding: header.name, as: UTF8.self),
                              hint: "start with the first volume")
            case UInt8(ascii: "N"):
                throw QBError(.unsupported, "old GNU long-name member (type N) is not supported")
            default:
                raw.append(contentsOf: header.bytes)
                var all = globalRecords
                all.merge(records)
                let entry = try buildEntry(header: header, raw: raw, records: all, hasPAX: !records.isEmpty,
                                           longName: longName, longLink: longLink)
                return entry
            }
        }
    }

    private func checkMetaCount(_ n: Int) throws(QBError) {
        guard n <= options.limits.maxMetaMembers else {
            throw QBError(.limitExceeded, "more than \(options.limits.maxMetaMembers) extended headers for one member", hint: "corrupt or hostile archive")
        }
    }

    private func buildEntry(header: TarHeaderBlock, raw: [UInt8], records: PAXRecords, hasPAX: Bool,
                            longName: [UInt8]?, longLink: [UInt8]?) throws(QBError) -> TarEntry {
        var raw = raw
        let limits = options.limits
        let dialect = header.dialect
        let format: TarFormat = hasPAX ? .pax : dialect

        var path = longName ?? header.name
        // Old GNU headers have their own fields where ustar keeps the prefix.
        if longName == nil, dialect == .ustar {
            let prefix = header.prefix
            if !prefix.isEmpty { path = prefix + [0x2F] + path }
        }
        var link = longLink ?? header.linkname
        let mode = try header.mode
        var uid = try header.uid
        var gid = try header.gid
        var size = try header.size
        var mtime = try header.mtime
        var mtimeNanoseconds = 0
        var uname = "", gname = ""
        var devMajor: Int64 = 0, devMinor: Int64 = 0
        if dialect != .v7 {
            uname = String(decoding: header.uname, as: UTF8.self)
            gname = String(decoding: header.gname, as: UTF8.self)
            devMajor = try header.devmajor
            devMinor = try header.devminor
        }
        if let v = records["path"] { path = v }
        if let v = records["linkpath"] { link = v }
        if let v = records["size"] { size = try TarNumeric.paxNumber(v, key: "size") }
        if let v = records["uid"] { uid = try TarNumeric.paxNumber(v, key: "uid") }
        if let v = records["gid"] { gid = try TarNumeric.paxNumber(v, key: "gid") }
        if let v = records["mtime"] { (mtime, mtimeNanoseconds) = try TarNumeric.paxTime(v) }
        if let v = records["uname"] { uname = String(decoding: v, as: UTF8.self) }
        if let v = records["gname"] { gname = String(decoding: v, as: UTF8.self) }

        let type = header.typeflag
        var kind = header.kind
        // v7 had no directory type: a regular name ending in `/` is one.
        if kind == .regular, type != UInt8(ascii: "S"), path.last == 0x2F { kind = .directory }

        guard size <= limits.maxMemberSize else {
            throw QBError(.limitExceeded, "member size \(size) is over the limit", subject: String(decoding: path, as: UTF8.self),
                          hint: "corrupt or hostile archive")
        }

        // Sparse members.
        var sparse: SparseMap?
        var stored = size
        var logical = size
        // Errors of the map name the member it belongs to.
        do throws(QBError) {
            if type == UInt8(ascii: "S") {
                // Extension blocks are part of the member's raw header.
                let entries = try SparseFormats.oldGNUEntries(header: header, maxEntries: limits.maxSparseEntries) { () throws(QBError) in
                    let block = try readWholeBlock()
                    raw.append(contentsOf: block)
                    return block
                }
                logical = try header.gnuRealSize
                sparse = try SparseMap(entries: entries, realSize: logical, storedSize: stored)
            } else if let major = records["GNU.sparse.major"], let minor = records["GNU.sparse.minor"] {
                guard major == Array("1".utf8), minor == Array("0".utf8) else {
                    throw QBError(.unsupported, "PAX sparse format \(String(decoding: major, as: UTF8.self)).\(String(decoding: minor, as: UTF8.self)) is not supported",
                                  subject: String(decoding: path, as: UTF8.self))
                }
                guard let real = records["GNU.sparse.realsize"] else {
                    throw QBError(.malformed, "PAX sparse 1.0 member without GNU.sparse.realsize", subject: String(decoding: path, as: UTF8.self))
                }
                logical = try TarNumeric.paxNumber(real, key: "GNU.sparse.realsize")
                if let name = records["GNU.sparse.name"] { path = name }
                // The map is read here, not as data: it goes with the raw header.
                let (entries, mapSize) = try SparseFormats.sparse10Entries(dataSize: size, maxEntries: limits.maxSparseEntries) { () throws(QBError) in
                    let block = try readWholeBlock()
                    raw.append(contentsOf: block)
                    return block
                }
                stored = size - mapSize
                sparse = try SparseMap(entries: entries, realSize: logical, storedSize: stored)
            } else if records["GNU.sparse.map"] != nil || records["GNU.sparse.offset"] != nil {
                guard let real = records["GNU.sparse.realsize"] ?? records["GNU.sparse.size"] else {
                    throw QBError(.malformed, "PAX sparse member without GNU.sparse.size", subject: String(decoding: path, as: UTF8.self))
                }
                logical = try TarNumeric.paxNumber(real, key: "GNU.sparse.size")
                if let name = records["GNU.sparse.name"] { path = name }
                let entries = try SparseFormats.pax0xEntries(records, maxEntries: limits.maxSparseEntries)
                sparse = try SparseMap(entries: entries, realSize: logical, storedSize: stored)
            }
        } catch {
            throw error.about(String(decoding: path, as: UTF8.self))
        }
        if sparse != nil, kind != .regular {
            throw QBError(.malformed, "sparse map on a member that is not a regular file", subject: String(decoding: path, as: UTF8.self))
        }
        guard logical <= limits.maxMemberSize else {
            throw QBError(.limitExceeded, "member size \(logical) is over the limit", subject: String(decoding: path, as: UTF8.self),
                          hint: "corrupt or hostile archive")
        }
        guard path.count <= limits.maxNameLength, link.count <= limits.maxNameLength else {
            throw QBError(.limitExceeded, "member name longer than \(limits.maxNameLength) bytes", hint: "corrupt or hostile archive")
        }
        guard !path.isEmpty else { throw QBError(.malformed, "member with an empty name", hint: "corrupt archive") }
        guard !path.contains(0), !link.contains(0) else {
            throw QBError(.malformed, "member name contains a NUL byte", hint: "corrupt or hostile archive")
        }

        let entry = TarEntry(path: path, linkTarget: link, kind: kind, mode: UInt32(truncatingIfNeeded: mode & 0o7777),
                             uid: uid, gid: gid, userName: uname, groupName: gname, modificationTime: mtime,
                             modificationNanoseconds: mtimeNanoseconds,
                             size: logical, storedSize: stored, sparseMap: sparse,
                             deviceMajor: devMajor, deviceMinor: devMinor, format: format, rawHeader: raw)
        let regions = sparse?.regions ?? (stored > 0 ? [SparseRegion(offset: 0, length: stored)] : [])
        member = MemberCursor(entry: entry, regions: regions, dataSize: size)
        return entry
    }
}
