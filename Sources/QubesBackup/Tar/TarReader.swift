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
    private let volumes: TarVolumeSequence
    private var source: ByteSource?
    private let buffer: IOBuffer
    private var stickyError: QBError?
    private var ended = false
    private var globalRecords = PAXRecords()

    // The member being read.
    private var current: TarEntry?
    private var regions: [SparseRegion] = []
    private var regionIndex = 0
    private var offsetInRegion: Int64 = 0
    private var physicalRemaining: Int64 = 0
    private var paddingRemaining = 0
    private var logicalPosition: Int64 = 0
    private var inMemberData = false

    /// Reads one archive from `source`.
    public convenience init(source: ByteSource, options: Options = Options(), bufferSize: Int = IOBuffer.defaultCapacity) {
        self.init(volumes: TarVolumeList([source]), options: options, bufferSize: bufferSize)
    }

    /// Reads the volumes of a multi-volume archive as one archive. At the
    /// start of each later volume, a member in progress must continue with
    /// an `M` header whose name matches, whose size equals the stored bytes
    /// still expected, and whose offset plus size equals the member's size.
    public init(volumes: TarVolumeSequence, options: Options = Options(), bufferSize: Int = IOBuffer.defaultCapacity) {
        self.volumes = volumes
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

    private var volumesExhausted = false

    private func currentSource() throws(QBError) -> ByteSource? {
        if source == nil { source = try nextVolume() }
        return source
    }

    private func nextVolume() throws(QBError) -> ByteSource? {
        if volumesExhausted { return nil }
        let v = try volumes.nextVolume()
        if v == nil { volumesExhausted = true }
        return v
    }

    /// Reads one 512-byte block outside member data. Volume boundaries
    /// between blocks are crossed silently.
    private func readBlock() throws(QBError) -> Block {
        while buffer.readableCount < 512 {
            if buffer.freeCapacity < 512 { buffer.compact() }
            guard let src = try currentSource() else { break }
            if try src.read(into: buffer) > 0 { continue }
            if buffer.isEmpty, let next = try nextVolume() {
                source = next
                continue
            }
            if !buffer.isEmpty, try nextVolume() != nil {
                throw QBError(.malformed, "volume does not end on a 512-byte block boundary", hint: "corrupt multi-volume archive")
            }
            source = nil
            break
        }
        if buffer.readableCount >= 512 {
            let block = buffer.withReadable { (span: RawSpan) -> [UInt8] in
                var b: [UInt8] = []
                b.reserveCapacity(512)
                b.append(contentsOf: span.extracting(0..<512))
                return b
            }
            buffer.consume(512)
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
        while true {
            guard let src = try currentSource() else { throw truncated() }
            if try src.read(into: buffer) > 0 { return }
            guard let next = try nextVolume() else {
                source = nil
                throw truncated()
            }
            source = next
            try readContinuationHeader()
            // Reading the header may have buffered the volume's data already.
            if !buffer.isEmpty { return }
        }
    }

    private func truncated() -> QBError {
        QBError(.truncated, "truncated archive", subject: current?.name,
                hint: "the input ends inside a member; a chunk or volume may be missing")
    }

    private func readContinuationHeader() throws(QBError) {
        guard let entry = current else { return }
        var longName: [UInt8]?
        while true {
            guard case .block(let b) = try readBlock() else { throw truncated() }
            if isAllZero(b) { throw QBError(.malformed, "volume starts with a zero block inside a member", subject: entry.name) }
            try verifyChecksum(b)
            let type = b[156]
            if type == UInt8(ascii: "L") {
                longName = try readMetaData(header: b, limit: options.limits.maxNameLength, what: "long name").value
                continue
            }
            if type == UInt8(ascii: "V") { continue }
            guard type == UInt8(ascii: "M") else {
                throw QBError(.malformed, "volume does not continue the member in progress", subject: entry.name,
                              hint: "volumes out of order or one missing")
            }
            let name = longName ?? cString(b[0..<100])
            let size = try TarNumeric.parse(b[124..<136], what: "size")
            let offset = try TarNumeric.parse(b[369..<381], what: "offset")
            guard name == entry.path || name == stripDotSlash(entry.path) else {
                throw QBError(.malformed, "continuation header names \(String(decoding: name, as: UTF8.self))", subject: entry.name,
                              hint: "volumes out of order or one missing")
            }
            guard size == physicalRemaining, offset <= Int64.max - size, offset + size == entry.size else {
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

    private func consumePadding() throws(QBError) {
        while paddingRemaining > 0 {
            if buffer.isEmpty {
                // Padding is always in the same volume as the data it pads.
                guard let src = try currentSource(), try src.read(into: buffer) > 0 else { throw truncated() }
            }
            let n = min(paddingRemaining, buffer.readableCount)
            buffer.consume(n)
            paddingRemaining -= n
        }
        inMemberData = false
    }

    private func fragment(_ body: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) -> Bool {
        guard inMemberData else { return false }
        guard physicalRemaining > 0, regionIndex < regions.count else {
            try consumePadding()
            return false
        }
        if buffer.isEmpty { try refillData() }
        let region = regions[regionIndex]
        let n = Int(min(Int64(buffer.readableCount), physicalRemaining, region.length - offsetInRegion))
        let offset = region.offset + offsetInRegion
        try buffer.withReadable { (span: RawSpan) throws(QBError) in try body(offset, span.extracting(0..<n)) }
        buffer.consume(n)
        advance(n)
        return true
    }

    private func advance(_ n: Int) {
        physicalRemaining -= Int64(n)
        offsetInRegion += Int64(n)
        logicalPosition = regions[regionIndex].offset + offsetInRegion
        if offsetInRegion == regions[regionIndex].length {
            regionIndex += 1
            offsetInRegion = 0
        }
    }

    private func readLogical(into output: IOBuffer) throws(QBError) -> Int {
        guard inMemberData, let entry = current else { return 0 }
        precondition(output.freeCapacity > 0, "no room in the output buffer")
        let holeEnd: Int64
        if regionIndex < regions.count {
            holeEnd = regions[regionIndex].offset
        } else {
            holeEnd = entry.size
        }
        if logicalPosition < holeEnd && offsetInRegion == 0 {
            let n = Int(min(Int64(output.freeCapacity), holeEnd - logicalPosition))
            var left = n
            while left > 0 {
                let k = min(left, zeroBytes.count)
                output.append(zeroBytes[0..<k])
                left -= k
            }
            logicalPosition += Int64(n)
            return n
        }
        if regionIndex >= regions.count {
            try consumePadding()
            return 0
        }
        if buffer.isEmpty { try refillData() }
        let n = Int(min(Int64(buffer.readableCount), Int64(output.freeCapacity), regions[regionIndex].length - offsetInRegion))
        buffer.withReadable { (span: RawSpan) in output.append(span.extracting(0..<n)) }
        buffer.consume(n)
        advance(n)
        return n
    }

    /// Skips the rest of the current member's data and padding.
    private func skipMember() throws(QBError) {
        guard inMemberData else { return }
        while physicalRemaining > 0 {
            if buffer.isEmpty { try refillData() }
            let n = Int(min(Int64(buffer.readableCount), physicalRemaining))
            buffer.consume(n)
            physicalRemaining -= Int64(n)
        }
        try consumePadding()
    }

    // MARK: - Headers

    private func isAllZero(_ b: [UInt8]) -> Bool { b.allSatisfy { $0 == 0 } }

    private func verifyChecksum(_ b: [UInt8]) throws(QBError) {
        guard try TarNumeric.checksumMatches(b) else {
            throw QBError(.malformed, "header checksum mismatch", hint: "not a tar archive, or corrupt")
        }
    }

    /// Reads the data area of a meta member (PAX records, long name), padded
    /// blocks included, refusing sizes over `limit`.
    private func readMetaData(header: [UInt8], limit: Int, what: String) throws(QBError) -> (value: [UInt8], raw: [UInt8]) {
        let size = try TarNumeric.parse(header[124..<136], what: "size")
        guard size <= Int64(limit) else {
            throw QBError(.limitExceeded, "\(what) of \(size) bytes is over the limit of \(limit)", hint: "corrupt or hostile archive")
        }
        var raw: [UInt8] = []
        let blocks = (Int(size) + 511) / 512
        raw.reserveCapacity(blocks * 512)
        for _ in 0..<blocks {
            guard case .block(let b) = try readBlock() else { throw truncated() }
            raw.append(contentsOf: b)
        }
        return (Array(raw[0..<Int(size)]), raw)
    }

    private func cString(_ field: ArraySlice<UInt8>) -> [UInt8] {
        if let nul = field.firstIndex(of: 0) { return Array(field[field.startIndex..<nul]) }
        return Array(field)
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
            guard let src = try currentSource() else { return }
            if try src.read(into: buffer) == 0 {
                source = try nextVolume()
                if source == nil { return }
            }
        }
    }

    private func nextMember() throws(QBError) -> TarEntry? {
        if current != nil {
            try skipMember()
            current = nil
        }
        var raw: [UInt8] = []
        var records = PAXRecords()
        var longName: [UInt8]?
        var longLink: [UInt8]?
        var metaCount = 0
        var sawZero = false
        while true {
            let block: [UInt8]
            switch try readBlock() {
            case .end:
                if sawZero && raw.isEmpty { ended = true; return nil }
                throw truncated()
            case .partial(let allZero):
                if sawZero && allZero && raw.isEmpty { ended = true; return nil }
                throw truncated()
            case .block(let b):
                block = b
            }
            if isAllZero(block) {
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
            try verifyChecksum(block)
            let type = block[156]
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                metaCount += 1
                try checkMetaCount(metaCount)
                let (value, blocks) = try readMetaData(header: block, limit: options.limits.maxSpecialHeaderSize, what: "extended header")
                let parsed = try PAXRecords(parsing: value[...])
                if type == UInt8(ascii: "x") {
                    records.merge(parsed)
                    raw.append(contentsOf: block)
                    raw.append(contentsOf: blocks)
                } else {
                    // Global headers apply to every later member; they are not
                    // part of any one member's raw header.
                    globalRecords.merge(parsed)
                }
            case UInt8(ascii: "L"), UInt8(ascii: "K"):
                metaCount += 1
                try checkMetaCount(metaCount)
                let (value, blocks) = try readMetaData(header: block, limit: options.limits.maxNameLength, what: "long name")
                let name = cString(value[...])
                if type == UInt8(ascii: "L") { longName = name } else { longLink = name }
                raw.append(contentsOf: block)
                raw.append(contentsOf: blocks)
            case UInt8(ascii: "V"):
                // A volume label describes the volume, not a member.
                let size = try TarNumeric.parse(block[124..<136], what: "size")
                guard size == 0 else { throw QBError(.malformed, "volume label with data", hint: "corrupt archive") }
                raw = []
                records = PAXRecords()
            case UInt8(ascii: "M"):
                throw QBError(.malformed, "continuation of a member from an earlier volume", subject: String(decoding: cString(block[0..<100]), as: UTF8.self),
                              hint: "start with the first volume")
            case UInt8(ascii: "N"):
                throw QBError(.unsupported, "old GNU long-name member (type N) is not supported")
            default:
                raw.append(contentsOf: block)
                var all = globalRecords
                all.merge(records)
                let entry = try buildEntry(header: block, raw: raw, records: all, hasPAX: !records.isEmpty,
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

    private static let ustarMagic: [UInt8] = Array("ustar\u{0}".utf8)
    private static let gnuMagic: [UInt8] = Array("ustar  \u{0}".utf8)

    private func buildEntry(header b: [UInt8], raw: [UInt8], records: PAXRecords, hasPAX: Bool,
                            longName: [UInt8]?, longLink: [UInt8]?) throws(QBError) -> TarEntry {
        var raw = raw
        let limits = options.limits
        let isGNU = Array(b[257..<265]) == Self.gnuMagic
        let isUstar = !isGNU && Array(b[257..<263]) == Self.ustarMagic
        let format: TarFormat = hasPAX ? .pax : (isGNU ? .gnu : (isUstar ? .ustar : .v7))

        var path = longName ?? cString(b[0..<100])
        if longName == nil, isUstar {
            let prefix = cString(b[345..<500])
            if !prefix.isEmpty { path = prefix + [0x2F] + path }
        }
        var link = longLink ?? cString(b[157..<257])
        let mode = try TarNumeric.parse(b[100..<108], what: "mode")
        var uid = try TarNumeric.parse(b[108..<116], what: "uid")
        var gid = try TarNumeric.parse(b[116..<124], what: "gid")
        var size = try TarNumeric.parse(b[124..<136], what: "size")
        var mtime = try TarNumeric.parse(b[136..<148], what: "mtime")
        var mtimeNanoseconds = 0
        var uname = "", gname = ""
        var devMajor: Int64 = 0, devMinor: Int64 = 0
        if isGNU || isUstar {
            uname = String(decoding: cString(b[265..<297]), as: UTF8.self)
            gname = String(decoding: cString(b[297..<329]), as: UTF8.self)
            devMajor = try TarNumeric.parse(b[329..<337], what: "device major")
            devMinor = try TarNumeric.parse(b[337..<345], what: "device minor")
        }
        if let v = records["path"] { path = v }
        if let v = records["linkpath"] { link = v }
        if let v = records["size"] { size = try paxNumber(v, "size") }
        if let v = records["uid"] { uid = try paxNumber(v, "uid") }
        if let v = records["gid"] { gid = try paxNumber(v, "gid") }
        if let v = records["mtime"] { (mtime, mtimeNanoseconds) = try paxTime(v) }
        if let v = records["uname"] { uname = String(decoding: v, as: UTF8.self) }
        if let v = records["gname"] { gname = String(decoding: v, as: UTF8.self) }

        let type = b[156]
        var kind: TarEntryKind
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "S"): kind = .regular
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symbolicLink
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"), UInt8(ascii: "D"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        default: kind = .other(type)
        }
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
                var entries: [SparseRegion] = []
                try appendOldGNUEntries(b[386..<482], count: 4, to: &entries)
                var extended = b[482] != 0
                // Each extension block holds 21 entries; empty ones (first offset
                // NUL) add none, so the map's limit alone would not stop a chain
                // of them, and their raw blocks are kept.
                var extensionBlocks = 0
                while extended {
                    extensionBlocks += 1
                    guard extensionBlocks <= options.limits.maxSparseEntries / 21 + 1 else { throw sparseLimit() }
                    guard case .block(let ext) = try readBlock() else { throw truncated() }
                    raw.append(contentsOf: ext)
                    try appendOldGNUEntries(ext[0..<504], count: 21, to: &entries)
                    extended = ext[504] != 0
                }
                logical = try TarNumeric.parse(b[483..<495], what: "real size")
                sparse = try SparseMap(entries: entries, realSize: logical, storedSize: stored)
            } else if let major = records["GNU.sparse.major"], let minor = records["GNU.sparse.minor"] {
                guard major == Array("1".utf8), minor == Array("0".utf8) else {
                    throw QBError(.unsupported, "PAX sparse format \(String(decoding: major, as: UTF8.self)).\(String(decoding: minor, as: UTF8.self)) is not supported",
                                  subject: String(decoding: path, as: UTF8.self))
                }
                guard let real = records["GNU.sparse.realsize"] else {
                    throw QBError(.malformed, "PAX sparse 1.0 member without GNU.sparse.realsize", subject: String(decoding: path, as: UTF8.self))
                }
                logical = try paxNumber(real, "GNU.sparse.realsize")
                if let name = records["GNU.sparse.name"] { path = name }
                let (entries, mapBytes) = try readSparse10Map(dataSize: size, raw: &raw)
                stored = size - mapBytes
                sparse = try SparseMap(entries: entries, realSize: logical, storedSize: stored)
            } else if records["GNU.sparse.map"] != nil || records["GNU.sparse.offset"] != nil {
                guard let real = records["GNU.sparse.realsize"] ?? records["GNU.sparse.size"] else {
                    throw QBError(.malformed, "PAX sparse member without GNU.sparse.size", subject: String(decoding: path, as: UTF8.self))
                }
                logical = try paxNumber(real, "GNU.sparse.size")
                if let name = records["GNU.sparse.name"] { path = name }
                let entries = try pax0xEntries(records)
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
        current = entry
        regions = sparse?.regions ?? (stored > 0 ? [SparseRegion(offset: 0, length: stored)] : [])
        regionIndex = 0
        offsetInRegion = 0
        physicalRemaining = stored
        paddingRemaining = Int((512 - size % 512) % 512)
        logicalPosition = 0
        inMemberData = true
        return entry
    }

    private func appendOldGNUEntries(_ area: ArraySlice<UInt8>, count: Int, to entries: inout [SparseRegion]) throws(QBError) {
        var p = area.startIndex
        for _ in 0..<count {
            // An entry whose offset field starts with NUL ends the list (unused slots).
            if area[p] == 0 { break }
            let offset = try TarNumeric.parse(area[p..<(p + 12)], what: "sparse offset")
            let length = try TarNumeric.parse(area[(p + 12)..<(p + 24)], what: "sparse length")
            guard entries.count < options.limits.maxSparseEntries else { throw sparseLimit() }
            entries.append(SparseRegion(offset: offset, length: length))
            p += 24
        }
    }

    private func sparseLimit() -> QBError {
        QBError(.limitExceeded, "sparse map has more than \(options.limits.maxSparseEntries) entries",
                hint: "corrupt or hostile archive")
    }

    /// Longest number of a PAX 1.0 sparse map, in digits: Int64 has 19, and
    /// GNU tar writes no leading zeros. With the entry limit this bounds the
    /// map's text to about 21 bytes per number.
    static let maxSparse10Digits = 20

    /// PAX 1.0: the map is text at the start of the data area — the entry
    /// count, then offset and length of each, every number followed by LF —
    /// padded with NULs to a block boundary.
    private func readSparse10Map(dataSize: Int64, raw: inout [UInt8]) throws(QBError) -> ([SparseRegion], Int64) {
        var numbers: [Int64] = []
        var needed = -1
        var value: Int64 = 0
        var digits = 0
        var consumed: Int64 = 0
        let bad = QBError(.malformed, "invalid PAX sparse 1.0 map", hint: "corrupt or hostile archive")
        while needed < 0 || numbers.count < needed {
            guard consumed + 512 <= dataSize else { throw bad }
            guard case .block(let b) = try readBlock() else { throw truncated() }
            raw.append(contentsOf: b)
            consumed += 512
            for byte in b {
                if needed >= 0 && numbers.count == needed { break }
                if byte == 0x0A {
                    guard digits > 0 else { throw bad }
                    if needed < 0 {
                        guard value <= Int64(options.limits.maxSparseEntries) else { throw sparseLimit() }
                        needed = 1 + 2 * Int(value)
                    }
                    numbers.append(value)
                    value = 0
                    digits = 0
                } else if byte >= 0x30 && byte <= 0x39 {
                    // Leading zeros do not overflow: without this bound a map
                    // of endless "000…" would be read (and kept) to the end of
                    // the member's data.
                    guard digits < Self.maxSparse10Digits else {
                        throw QBError(.limitExceeded, "PAX sparse 1.0 map number longer than \(Self.maxSparse10Digits) digits",
                                      hint: "corrupt or hostile archive")
                    }
                    let (m, o1) = value.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = m.addingReportingOverflow(Int64(byte - 0x30))
                    guard !o1, !o2 else { throw bad }
                    value = sum
                    digits += 1
                } else {
                    throw bad
                }
            }
        }
        var entries: [SparseRegion] = []
        entries.reserveCapacity(Int(numbers[0]))
        var i = 1
        while i < numbers.count {
            entries.append(SparseRegion(offset: numbers[i], length: numbers[i + 1]))
            i += 2
        }
        return (entries, consumed)
    }

    /// PAX 0.0 (repeated GNU.sparse.offset / GNU.sparse.numbytes) and 0.1
    /// (GNU.sparse.map=offset,size,...).
    private func pax0xEntries(_ records: PAXRecords) throws(QBError) -> [SparseRegion] {
        let bad = QBError(.malformed, "invalid PAX sparse map", subject: current?.name, hint: "corrupt or hostile archive")
        var entries: [SparseRegion] = []
        if let map = records["GNU.sparse.map"] {
            let parts = map.split(separator: 0x2C, omittingEmptySubsequences: false)
            if map.isEmpty { return [] }
            guard parts.count % 2 == 0 else { throw bad }
            guard parts.count / 2 <= options.limits.maxSparseEntries else { throw sparseLimit() }
            var i = 0
            while i < parts.count {
                guard let o = TarNumeric.decimal(parts[i]), let n = TarNumeric.decimal(parts[i + 1]) else { throw bad }
                entries.append(SparseRegion(offset: o, length: n))
                i += 2
            }
        } else {
            var pendingOffset: Int64?
            for (key, value) in records.records {
                if key == "GNU.sparse.offset" {
                    guard pendingOffset == nil, let o = TarNumeric.decimal(value[...]) else { throw bad }
                    pendingOffset = o
                } else if key == "GNU.sparse.numbytes" {
                    guard let o = pendingOffset, let n = TarNumeric.decimal(value[...]) else { throw bad }
                    guard entries.count < options.limits.maxSparseEntries else { throw sparseLimit() }
                    entries.append(SparseRegion(offset: o, length: n))
                    pendingOffset = nil
                }
            }
            guard pendingOffset == nil else { throw bad }
        }
        if let count = records["GNU.sparse.numblocks"] {
            guard TarNumeric.decimal(count[...]) == Int64(entries.count) else { throw bad }
        }
        return entries
    }

    private func paxNumber(_ v: [UInt8], _ key: String) throws(QBError) -> Int64 {
        guard let n = TarNumeric.decimal(v[...]) else {
            throw QBError(.malformed, "invalid \(key) in extended header", hint: "corrupt or hostile archive")
        }
        return n
    }

    /// PAX times are decimal seconds with an optional fraction (kept to
    /// nanoseconds; further digits dropped).
    private func paxTime(_ v: [UInt8]) throws(QBError) -> (Int64, Int) {
        let bad = QBError(.malformed, "invalid mtime in extended header", hint: "corrupt or hostile archive")
        var s = v[...]
        var negative = false
        if s.first == 0x2D { negative = true; s = s.dropFirst() }
        var nanoseconds = 0
        if let dot = s.firstIndex(of: 0x2E) {
            let fraction = s[(dot + 1)...]
            guard fraction.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw bad }
            var scale = 100_000_000
            for digit in fraction.prefix(9) {
                nanoseconds += Int(digit - 0x30) * scale
                scale /= 10
            }
            s = s[s.startIndex..<dot]
        }
        guard var seconds = TarNumeric.decimal(s) else { throw bad }
        if negative {
            seconds = -seconds
            if nanoseconds > 0 { seconds -= 1; nanoseconds = 1_000_000_000 - nanoseconds }
        }
        return (seconds, nanoseconds)
    }
}
