/// Writes a tar archive as a PAX (POSIX.1-2001) stream that GNU tar, bsdtar
/// and our own `TarReader` read back exactly.
///
/// Each member is a ustar header, preceded by a PAX `x` extended header only
/// when some field does not fit ustar: a path that cannot be split into
/// prefix and name, a link target over 100 bytes, a uid, gid or size beyond
/// the octal fields, a user or group name that is long or not ASCII, an
/// mtime with nanoseconds or outside the octal range. Keeping the common case
/// plain ustar keeps archives small and readable by old tools.
///
/// Files with holes are written in GNU's PAX sparse format 1.0 (the map as
/// decimal text at the start of the member's data, `GNU.sparse.*` records),
/// the only sparse format that needs no size limits in the header and that
/// GNU tar extracts with the holes recreated.
///
/// Output goes to the sink in large blocks (1 MiB by default), so a pipe to
/// `tar -x` or ssh sees few, large writes. Member data is checked against its
/// header as it is written: a fragment out of order, in a hole or beyond the
/// end, or data ending early, is `.malformed`. Headers are written before
/// their data, so such a failure leaves the member half written: the writer
/// then refuses every later call and `finish()` never adds the end-of-archive
/// blocks, so the output is a visibly truncated archive (every tar reports
/// it), never one whose member data silently disagrees with its header.
public final class TarWriter {
    private typealias Field = TarHeaderBlock.Field

    /// 1 MiB, like the rest of the pipeline's buffers.
    public static let defaultBufferSize = IOBuffer.defaultCapacity

    private let sink: ByteSink
    private let buffer: IOBuffer
    private var failure: QBError?
    private var finished = false

    public init(sink: ByteSink, bufferSize: Int = TarWriter.defaultBufferSize) {
        self.sink = sink
        // At least a few blocks so headers rarely straddle a flush.
        buffer = IOBuffer(capacity: Swift.max(bufferSize, 4096))
    }

    // MARK: - Public API

    /// Writes one member.
    ///
    /// For a regular file, `data` is called once and given `emit`, which
    /// takes the file's bytes as (logical offset, bytes) fragments in
    /// increasing offset order. Without `entry.sparseMap` the fragments must
    /// cover `0..<entry.size` contiguously. With a map (its `realSize` equal
    /// to `entry.size`) the member is written as PAX sparse 1.0 and the
    /// fragments must cover exactly the map's regions, in order (one fragment
    /// may run across regions that touch); everything else is a hole. The
    /// map must be known before the data because it is stored first.
    ///
    /// Every other kind is a header only and `data` is not called:
    /// directories, symbolic links and hard links (`linkTarget`; for a hard
    /// link the path of an earlier member), character and block devices
    /// (`deviceMajor`/`deviceMinor`) and FIFOs. Their `size` is ignored
    /// (stored as 0), as GNU tar does.
    ///
    /// Used from the entry: path, linkTarget, kind, mode (low 12 bits), uid,
    /// gid, userName, groupName, modificationTime and
    /// modificationNanoseconds, size, sparseMap, deviceMajor, deviceMinor.
    /// `storedSize`, `format` and `rawHeader` are the reader's and ignored.
    public func append(_ entry: TarEntry,
                       data: (_ emit: (_ offset: Int64, _ bytes: RawSpan) throws(QBError) -> Void) throws(QBError) -> Void) throws(QBError) {
        try guarded { () throws(QBError) in try appendMember(entry, data: data) }
    }

    /// Writes a member without data: any non-regular kind, or an empty file
    /// (a regular entry with a size above 0 fails as data ending early).
    public func append(_ entry: TarEntry) throws(QBError) {
        try append(entry) { (_: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) in }
    }

    /// Writes a regular member whose whole content is in memory.
    public func append(_ entry: TarEntry, contents: [UInt8]) throws(QBError) {
        try append(entry) { (emit: (Int64, RawSpan) throws(QBError) -> Void) throws(QBError) in
            try emit(0, contents.span.bytes)
        }
    }

    /// Ends the archive: two zero blocks, then everything is flushed and
    /// the sink finished. Later calls are refused.
    public func finish() throws(QBError) {
        try guarded { () throws(QBError) in
            try writeZeros(2 * TarHeaderBlock.size)
            try flush()
            try sink.finish()
            finished = true
        }
    }

    // MARK: - Members

    /// Runs `body` unless the writer failed or finished; any error makes the
    /// writer fail for good (a half-written member cannot be taken back).
    private func guarded(_ body: () throws(QBError) -> Void) throws(QBError) {
        if let failure { throw failure }
        guard !finished else { throw QBError(.usage, "tar archive already finished") }
        do {
            try body()
        } catch {
            if failure == nil { failure = error }
            throw error
        }
    }

    private func appendMember(_ entry: TarEntry,
                              data: ((Int64, RawSpan) throws(QBError) -> Void) throws(QBError) -> Void) throws(QBError) {
        let subject = entry.name
        do throws(QBError) {
            try validate(entry)
        } catch {
            throw error.about(subject)
        }
        let type = Self.typeFlag(entry.kind)!

        // The layout of the data area: which logical regions are stored, and
        // the sparse map text stored before them.
        var regions: [SparseRegion] = []
        var mapText: [UInt8] = []
        var storedSize: Int64 = 0
        if entry.kind == .regular {
            if let map = entry.sparseMap {
                guard map.realSize == entry.size else {
                    throw QBError(.malformed, "sparse map is for \(map.realSize) bytes but the file has \(entry.size)", subject: subject)
                }
                regions = map.regions
                storedSize = map.storedSize
                mapText = Self.sparse10Map(map)
            } else {
                regions = entry.size > 0 ? [SparseRegion(offset: 0, length: entry.size)] : []
                storedSize = entry.size
            }
        }
        let dataSize = Int64(mapText.count) + storedSize

        // Header fields, with a PAX record for each that does not fit.
        var records = PAXRecords()
        var paxPath: [UInt8]?
        var paxOther: [(String, [UInt8])] = []
        let headerName: [UInt8], headerPrefix: [UInt8]
        if entry.sparseMap != nil {
            // GNU's convention: a stand-in name for tars without sparse
            // support (they extract the map and data as a plain file under
            // it); the real name is GNU.sparse.name.
            let directory = Array("GNUSparseFile.0/".utf8)
            headerName = directory + Array(Self.baseName(entry.path).prefix(Field.name.count - directory.count))
            headerPrefix = []
        } else if let split = Self.splitUstarPath(entry.path) {
            headerName = split.name
            headerPrefix = split.prefix
        } else {
            paxPath = entry.path
            headerName = Array(entry.path.prefix(Field.name.count))
            headerPrefix = []
        }
        var headerLink = entry.linkTarget
        let linkFits = entry.linkTarget.count <= Field.linkname.count
        if !linkFits {
            headerLink = Array(entry.linkTarget.prefix(Field.linkname.count))
        }
        let sizeField = TarNumeric.octal(dataSize, width: Field.size.count)
        let uidField = TarNumeric.octal(entry.uid, width: Field.uid.count)
        let gidField = TarNumeric.octal(entry.gid, width: Field.gid.count)
        let mtimeField = TarNumeric.octal(entry.modificationTime, width: Field.mtime.count)
        let userName = Array(entry.userName.utf8), groupName = Array(entry.groupName.utf8)
        let userFits = Self.fitsNameField(userName), groupFits = Self.fitsNameField(groupName)

        if let paxPath { paxOther.append(("path", paxPath)) }
        if !linkFits { paxOther.append(("linkpath", entry.linkTarget)) }
        if sizeField == nil { paxOther.append(("size", Array(String(dataSize).utf8))) }
        if uidField == nil { paxOther.append(("uid", Array(String(entry.uid).utf8))) }
        if gidField == nil { paxOther.append(("gid", Array(String(entry.gid).utf8))) }
        if !userFits { paxOther.append(("uname", userName)) }
        if !groupFits { paxOther.append(("gname", groupName)) }
        if mtimeField == nil || entry.modificationNanoseconds != 0 {
            paxOther.append(("mtime", Self.paxTime(entry.modificationTime, entry.modificationNanoseconds)))
        }
        if let map = entry.sparseMap {
            paxOther.append(("GNU.sparse.major", Array("1".utf8)))
            paxOther.append(("GNU.sparse.minor", Array("0".utf8)))
            paxOther.append(("GNU.sparse.name", entry.path))
            paxOther.append(("GNU.sparse.realsize", Array(String(map.realSize).utf8)))
        }
        // Names are bytes on Linux and are stored as they are, even when not
        // UTF-8, as GNU tar 1.34 does: it reads such PAX values back raw, but
        // warns about (and ignores) a `hdrcharset=BINARY` record, which is
        // therefore not written.
        for (key, value) in paxOther { records.append(key, value) }

        if !records.isEmpty {
            let extended = records.encoded()
            let directory = Array("PaxHeaders.0/".utf8)
            let paxName = directory + Array(Self.baseName(entry.path).prefix(Field.name.count - directory.count))
            let header = Self.header(name: paxName, prefix: [], mode: 0o644, uid: Self.zeroOctal(Field.uid), gid: Self.zeroOctal(Field.gid),
                                     size: TarNumeric.octal(Int64(extended.count), width: Field.size.count)!,
                                     mtime: mtimeField ?? Self.zeroOctal(Field.mtime), type: UInt8(ascii: "x"), link: [],
                                     userName: [], groupName: [], deviceMajor: 0, deviceMinor: 0)
            try writeBytes(header[...])
            try writeBytes(extended[...])
            try writeZeros(TarHeaderBlock.padding(after: Int64(extended.count)))
        }

        let header = Self.header(name: headerName, prefix: headerPrefix, mode: entry.mode & 0o7777,
                                 uid: uidField ?? Self.zeroOctal(Field.uid), gid: gidField ?? Self.zeroOctal(Field.gid),
                                 size: sizeField ?? Self.zeroOctal(Field.size), mtime: mtimeField ?? Self.zeroOctal(Field.mtime),
                                 type: type, link: headerLink,
                                 userName: userFits ? userName : [], groupName: groupFits ? groupName : [],
                                 deviceMajor: entry.deviceMajor, deviceMinor: entry.deviceMinor)
        try writeBytes(header[...])
        try writeBytes(mapText[...])
        guard entry.kind == .regular else { return }

        // The data, checked fragment by fragment against `regions`.
        var index = 0            // the region being filled
        var filled: Int64 = 0    // bytes of regions[index] already written
        var written: Int64 = 0
        let emit = { (offset: Int64, bytes: RawSpan) throws(QBError) -> Void in
            do throws(QBError) {
                if let failure = self.failure { throw failure }
                let count = Int64(bytes.byteCount)
                if count == 0 { return }
                if index < regions.count, filled == regions[index].length { index += 1; filled = 0 }
                guard index < regions.count else {
                    throw QBError(.malformed, "data at offset \(offset) beyond the \(storedSize) bytes the header declares", subject: subject)
                }
                let expected = regions[index].offset + filled
                guard offset == expected else {
                    throw QBError(.malformed, "data at offset \(offset) where the header expects offset \(expected)", subject: subject)
                }
                // Consume the fragment across regions; it may only continue
                // into a region that starts where the previous one ends.
                var left = count
                while true {
                    let room = regions[index].length - filled
                    let n = Swift.min(room, left)
                    filled += n
                    left -= n
                    if left == 0 { break }
                    let end = regions[index].offset + regions[index].length
                    index += 1
                    filled = 0
                    guard index < regions.count else {
                        throw QBError(.malformed, "data runs past the \(storedSize) bytes the header declares", subject: subject)
                    }
                    guard regions[index].offset == end else {
                        throw QBError(.malformed, "data at offset \(end) falls in a hole of the sparse map", subject: subject)
                    }
                }
                try self.writeData(bytes)
                written += count
            } catch {
                // Sticky even if the caller's closure swallows the error.
                if self.failure == nil { self.failure = error }
                throw error
            }
        }
        try data(emit)
        if let failure { throw failure }
        guard written == storedSize else {
            throw QBError(.malformed, "member data ended after \(written) of \(storedSize) bytes", subject: subject,
                          hint: "the archive is left truncated")
        }
        try writeZeros(TarHeaderBlock.padding(after: dataSize))
    }

    /// Refuses entries no tar header can describe faithfully.
    private func validate(_ entry: TarEntry) throws(QBError) {
        guard Self.typeFlag(entry.kind) != nil else {
            throw QBError(.unsupported, "cannot write a member of this type")
        }
        guard !entry.path.isEmpty else { throw QBError(.usage, "member with an empty name") }
        // A NUL would end the name early in ustar fields and in readers.
        guard !entry.path.contains(0), !entry.linkTarget.contains(0) else {
            throw QBError(.usage, "member name contains a NUL byte")
        }
        guard entry.uid >= 0, entry.gid >= 0 else { throw QBError(.usage, "negative uid or gid") }
        guard (0..<1_000_000_000).contains(entry.modificationNanoseconds) else {
            throw QBError(.usage, "modification time nanoseconds out of range")
        }
        guard !entry.userName.utf8.contains(0), !entry.groupName.utf8.contains(0) else {
            throw QBError(.usage, "user or group name contains a NUL byte")
        }
        if entry.kind == .regular {
            guard entry.size >= 0 else { throw QBError(.usage, "negative member size") }
        } else {
            guard entry.sparseMap == nil else { throw QBError(.usage, "sparse map on a member that is not a regular file") }
        }
        if entry.kind == .characterDevice || entry.kind == .blockDevice {
            // PAX has no standard record for device numbers.
            guard TarNumeric.octal(entry.deviceMajor, width: Field.devmajor.count) != nil,
                  TarNumeric.octal(entry.deviceMinor, width: Field.devminor.count) != nil else {
                throw QBError(.unsupported, "device number too large for a tar header")
            }
        }
    }

    private static func typeFlag(_ kind: TarEntryKind) -> UInt8? {
        switch kind {
        case .regular: UInt8(ascii: "0")
        case .hardLink: UInt8(ascii: "1")
        case .symbolicLink: UInt8(ascii: "2")
        case .characterDevice: UInt8(ascii: "3")
        case .blockDevice: UInt8(ascii: "4")
        case .directory: UInt8(ascii: "5")
        case .fifo: UInt8(ascii: "6")
        case .other: nil
        }
    }

    // MARK: - Header encoding

    /// One ustar header block; every numeric field is already encoded (or is
    /// encoded here when it always fits), so this cannot fail.
    private static func header(name: [UInt8], prefix: [UInt8], mode: UInt32, uid: [UInt8], gid: [UInt8],
                               size: [UInt8], mtime: [UInt8], type: UInt8, link: [UInt8],
                               userName: [UInt8], groupName: [UInt8], deviceMajor: Int64, deviceMinor: Int64) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: TarHeaderBlock.size)
        // Values shorter than their field leave the rest NUL.
        func put(_ bytes: [UInt8], in field: Range<Int>) {
            assert(bytes.count <= field.count)
            b.replaceSubrange(field.lowerBound..<(field.lowerBound + bytes.count), with: bytes)
        }
        put(name, in: Field.name)
        put(TarNumeric.octal(Int64(mode), width: Field.mode.count)!, in: Field.mode)
        put(uid, in: Field.uid)
        put(gid, in: Field.gid)
        put(size, in: Field.size)
        put(mtime, in: Field.mtime)
        b[Field.typeflag] = type
        put(link, in: Field.linkname)
        put(TarHeaderBlock.ustarMagic, in: Field.magic)
        put(TarHeaderBlock.ustarVersion, in: Field.version)
        put(userName, in: Field.uname)
        put(groupName, in: Field.gname)
        // Validated to fit for devices; other kinds carry zeros, as GNU tar writes.
        put(TarNumeric.octal(deviceMajor, width: Field.devmajor.count) ?? zeroOctal(Field.devmajor), in: Field.devmajor)
        put(TarNumeric.octal(deviceMinor, width: Field.devminor.count) ?? zeroOctal(Field.devminor), in: Field.devminor)
        put(prefix, in: Field.prefix)
        // Checksum: six octal digits, NUL, space (the historical layout every reader accepts).
        var sum = TarNumeric.octal(Int64(TarNumeric.checksum(b)), width: Field.checksum.count - 1)!
        sum.append(0x20)
        put(sum, in: Field.checksum)
        return b
    }

    /// Zero in the octal form that fills `field`.
    private static func zeroOctal(_ field: Range<Int>) -> [UInt8] { TarNumeric.octal(0, width: field.count)! }

    /// Splits a path into ustar prefix (≤ 155 bytes) and name (≤ 100 bytes,
    /// not empty) at a slash, or nil when no split fits.
    static func splitUstarPath(_ path: [UInt8]) -> (prefix: [UInt8], name: [UInt8])? {
        let nameMax = Field.name.count, prefixMax = Field.prefix.count
        if path.count <= nameMax { return ([], path) }
        guard path.count <= prefixMax + 1 + nameMax else { return nil }
        // The shortest prefix that leaves a name of at most 100 bytes.
        var i = path.count - nameMax - 1
        while i <= prefixMax, i < path.count - 1 {
            if path[i] == 0x2F {
                return (Array(path[..<i]), Array(path[(i + 1)...]))
            }
            i += 1
        }
        return nil
    }

    /// User and group names go in their 32-byte fields when short and ASCII;
    /// otherwise in PAX (which holds them as UTF-8).
    private static func fitsNameField(_ name: [UInt8]) -> Bool {
        name.count <= Field.uname.count && name.allSatisfy { $0 < 0x80 }
    }

    /// The last path component (without a trailing slash), for the
    /// stand-in names of PAX and sparse headers.
    private static func baseName(_ path: [UInt8]) -> ArraySlice<UInt8> {
        var p = path[...]
        while p.count > 1, p.last == 0x2F { p = p.dropLast() }
        if let slash = p.lastIndex(of: 0x2F) { return p[(slash + 1)...] }
        return p
    }

    /// PAX `mtime`: decimal seconds, and nine fraction digits when there are
    /// nanoseconds. A negative time with a fraction counts down from the
    /// second after it: (-5 s, 300 ms) is -4.7, as readers parse it.
    static func paxTime(_ seconds: Int64, _ nanoseconds: Int) -> [UInt8] {
        guard nanoseconds != 0 else { return Array(String(seconds).utf8) }
        var whole = seconds, fraction = nanoseconds
        var sign = ""
        if seconds < 0 {
            sign = "-"
            whole = -(seconds + 1)
            fraction = 1_000_000_000 - nanoseconds
        }
        let digits = String(fraction)
        return Array((sign + String(whole) + "." + String(repeating: "0", count: 9 - digits.count) + digits).utf8)
    }

    /// The PAX sparse 1.0 map: the number of entries, then offset and length
    /// of each, one decimal number a line, padded with NULs to a block. When
    /// the file ends in a hole (or has no data), a last empty entry at the
    /// real size is added, as GNU tar writes it: that entry is what makes GNU
    /// tar extend the extracted file over the final hole.
    static func sparse10Map(_ map: SparseMap) -> [UInt8] {
        var entries = map.regions
        if let last = entries.last, last.offset + last.length == map.realSize {
        } else {
            entries.append(SparseRegion(offset: map.realSize, length: 0))
        }
        var text = Array("\(entries.count)\n".utf8)
        for e in entries { text.append(contentsOf: "\(e.offset)\n\(e.length)\n".utf8) }
        text.append(contentsOf: [UInt8](repeating: 0, count: TarHeaderBlock.padding(after: Int64(text.count))))
        return text
    }

    // MARK: - Output

    private static let zeroBlock = [UInt8](repeating: 0, count: TarHeaderBlock.size)

    /// Copies bytes into the buffer, flushing it whenever it fills; a span
    /// at least a whole buffer long goes to the sink directly instead of
    /// through a copy.
    private func writeData(_ bytes: RawSpan) throws(QBError) {
        var rest = bytes
        while rest.byteCount > 0 {
            if buffer.isEmpty, rest.byteCount >= buffer.capacity {
                try sink.write(rest)
                return
            }
            let n = Swift.min(buffer.freeCapacity, rest.byteCount)
            buffer.append(rest.extracting(0..<n))
            rest = rest.extracting(n..<rest.byteCount)
            if buffer.freeCapacity == 0 { try flush() }
        }
    }

    private func writeBytes(_ bytes: ArraySlice<UInt8>) throws(QBError) {
        try writeData(bytes.span.bytes)
    }

    private func writeZeros(_ count: Int) throws(QBError) {
        var left = count
        while left > 0 {
            let n = Swift.min(left, Self.zeroBlock.count)
            try writeBytes(Self.zeroBlock[0..<n])
            left -= n
        }
    }

    private func flush() throws(QBError) {
        guard !buffer.isEmpty else { return }
        try buffer.withReadable { (bytes) throws(QBError) in try sink.write(bytes) }
        buffer.clear()
    }
}

extension TarEntry {
    /// An entry to write with `TarWriter`. The reader-side fields are
    /// derived: `storedSize` from the map (or the size), `format` `.pax`,
    /// `rawHeader` empty.
    public init(path: [UInt8], kind: TarEntryKind, mode: UInt32, linkTarget: [UInt8] = [],
                uid: Int64 = 0, gid: Int64 = 0, userName: String = "", groupName: String = "",
                modificationTime: Int64 = 0, modificationNanoseconds: Int = 0,
                size: Int64 = 0, sparseMap: SparseMap? = nil, deviceMajor: Int64 = 0, deviceMinor: Int64 = 0) {
        self.init(path: path, linkTarget: linkTarget, kind: kind, mode: mode, uid: uid, gid: gid,
                  userName: userName, groupName: groupName, modificationTime: modificationTime,
                  modificationNanoseconds: modificationNanoseconds, size: size,
                  storedSize: sparseMap?.storedSize ?? size, sparseMap: sparseMap,
                  deviceMajor: deviceMajor, deviceMinor: deviceMinor, format: .pax, rawHeader: [])
    }
}
