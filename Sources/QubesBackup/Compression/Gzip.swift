internal import CZlib
internal import CIsal

// Two interchangeable gzip member decoders (RFC 1952). Both check the header,
// the trailer's CRC-32 and ISIZE; `MemberDecoder` handles concatenation,
// trailing garbage and truncation the same way for both.

/// gzip members through zlib's `inflate`.
final class ZlibGzipEngine: MemberEngine {
    /// Allocated once: zlib keeps a pointer back to the `z_stream` in its
    /// internal state and refuses a stream that has moved.
    private let stream: UnsafeMutablePointer<z_stream>

    init() throws(QBError) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let ret = qb_inflate_init_gzip(stream)
        guard ret == Z_OK else {
            stream.deallocate()
            throw Self.error(ret, nil, "cannot initialise zlib")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    func startMember() throws(QBError) {
        let ret = inflateReset(stream)
        guard ret == Z_OK else { throw Self.error(ret, stream.pointee.msg, "cannot reset zlib") }
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(QBError)
        -> (consumed: Int, produced: Int, memberEnded: Bool) {
        // avail_in is 32 bits wide; a larger write is handled over several calls.
        let inCount = Swift.min(input.count, Int(UInt32.max))
        let outCount = Swift.min(output.count, Int(UInt32.max))
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(inCount)
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(outCount)
        let ret = inflate(stream, Z_NO_FLUSH)
        let consumed = inCount - Int(stream.pointee.avail_in)
        let produced = outCount - Int(stream.pointee.avail_out)
        stream.pointee.next_in = nil
        switch ret {
        case Z_OK: return (consumed, produced, false)
        case Z_STREAM_END: return (consumed, produced, true)
        case Z_BUF_ERROR: return (consumed, produced, false) // no progress possible now: wants more input
        default: throw Self.error(ret, stream.pointee.msg, "gzip data is corrupt")
        }
    }

    /// zlib's own message (`incorrect data check`, `invalid distance too far
    /// back`) says what is wrong; the hint says what it means for a backup.
    private static func error(_ code: Int32, _ msg: UnsafePointer<CChar>?, _ fallback: String) -> QBError {
        let detail = msg.map { String(cString: $0) }
        switch code {
        case Z_MEM_ERROR: return QBError(.io(12), "zlib: out of memory")
        case Z_DATA_ERROR:
            return QBError(.malformed, "gzip data is corrupt" + (detail.map { ": \($0)" } ?? ""),
                           hint: "damaged or tampered input")
        default:
            return QBError(.malformed, fallback + " (zlib error \(code)" + (detail.map { ": \($0)" } ?? "") + ")")
        }
    }
}

/// gzip members through ISA-L's `isal_inflate` (igzip), about five times
/// faster than zlib on this kind of machine.
///
/// ISA-L 2.30 rejects a valid header CRC (FHCRC, RFC 1952 §2.3.1) when the
/// header reaches it over several calls (found by the one-byte-piece tests),
/// so each member's header is assembled here and handed over in one call.
final class IsalGzipEngine: MemberEngine {
    /// About 100 KiB of tables and window, allocated once and reset per member.
    private let state: UnsafeMutablePointer<inflate_state>
    /// The member's header while it straddles writes.
    private var header: [UInt8] = []
    private var inHeader = true
    /// FEXTRA is at most 64 KiB; a name or comment longer than this is no
    /// genuine backup's.
    static let headerLimit = 1 << 20

    init() throws(QBError) {
        state = .allocate(capacity: 1)
        isal_inflate_init(state)
    }

    deinit { state.deallocate() }

    func startMember() throws(QBError) {
        qb_isal_begin_gzip_member(state)
        header.removeAll(keepingCapacity: true)
        inHeader = true
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(QBError)
        -> (consumed: Int, produced: Int, memberEnded: Bool) {
        guard inHeader else { return try inflate(input, into: output) }
        if header.isEmpty, try gzipHeaderLength(input) != nil {
            // The usual case: the whole header is in this write.
            inHeader = false
            return try inflate(input, into: output)
        }
        // Take bytes until the header is complete, then pass it on whole.
        let start = header.count
        header.append(contentsOf: input)
        guard let length = try header.withBytes({ (h) throws(QBError) in try gzipHeaderLength(h) }) else {
            if header.count > Self.headerLimit {
                throw QBError(.limitExceeded, "gzip header longer than \(Self.headerLimit >> 20) MiB", hint: "not a genuine backup")
            }
            return (input.count, 0, false)
        }
        header.removeSubrange(length...)
        inHeader = false
        let r = try header.withBytes { (h) throws(QBError) in try inflate(h, into: output) }
        guard r.consumed == header.count else {
            throw QBError(.malformed, "gzip data is corrupt: isa-l did not accept the whole header")
        }
        return (length - start, r.produced, r.memberEnded)
    }

    private func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(QBError)
        -> (consumed: Int, produced: Int, memberEnded: Bool) {
        var consumed: UInt32 = 0, produced: UInt32 = 0
        var done: Int32 = 0
        let ret = qb_isal_inflate(state, input.baseAddress, UInt32(Swift.min(input.count, Int(UInt32.max))),
                                  output.baseAddress, UInt32(Swift.min(output.count, Int(UInt32.max))),
                                  &consumed, &produced, &done)
        guard ret == ISAL_DECOMP_OK || ret == ISAL_END_INPUT else { throw Self.error(ret) }
        return (Int(consumed), Int(produced), done != 0)
    }

    /// ISA-L reports codes only; these are its header's descriptions.
    private static func error(_ code: Int32) -> QBError {
        let what: String = switch code {
        case ISAL_INVALID_BLOCK: "invalid deflate block"
        case ISAL_INVALID_SYMBOL: "invalid deflate symbol"
        case ISAL_INVALID_LOOKBACK: "invalid lookback distance"
        case ISAL_INVALID_WRAPPER: "invalid gzip header"
        case ISAL_UNSUPPORTED_METHOD: "gzip header names an unsupported compression method"
        case ISAL_INCORRECT_CHECKSUM: "incorrect data check (CRC-32 or length in the gzip trailer)"
        case ISAL_NEED_DICT: "stream needs a preset dictionary"
        case QB_ISAL_READ_AHEAD_LOST: "isa-l read ahead across a member boundary"
        default: "isa-l error \(code)"
        }
        return QBError(.malformed, "gzip data is corrupt: \(what)", hint: "damaged or tampered input")
    }
}

/// The length of the gzip header at the start of `bytes` (RFC 1952 §2.3:
/// 10 fixed bytes, then FEXTRA, FNAME, FCOMMENT, FHCRC as flagged), or nil
/// while it is incomplete. Measures, and refuses reserved flags, which
/// RFC 1952 requires and ISA-L does not check; the inflater validates the rest.
func gzipHeaderLength(_ bytes: UnsafeRawBufferPointer) throws(QBError) -> Int? {
    guard bytes.count >= 4 else { return nil }
    let flags = bytes[3]
    if flags & 0xE0 != 0 {
        throw QBError(.malformed, "gzip data is corrupt: unknown header flags set", hint: "damaged or tampered input")
    }
    guard bytes.count >= 10 else { return nil }
    var n = 10
    if flags & 0x04 != 0 {
        guard bytes.count >= n + 2 else { return nil }
        n += 2 + (Int(bytes[n]) | Int(bytes[n + 1]) << 8)
    }
    for field: UInt8 in [0x08, 0x10] where flags & field != 0 {
        guard n < bytes.count, let nul = bytes[n...].firstIndex(of: 0) else { return nil }
        n = nul + 1
    }
    if flags & 0x02 != 0 { n += 2 }
    return bytes.count >= n ? n : nil
}
