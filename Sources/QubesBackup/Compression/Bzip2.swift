internal import CBzip2

/// bzip2 streams through libbz2, one stream per member: pbzip2 writes one
/// stream per block, and `bzip2 -d` decodes concatenated streams.
final class Bzip2Engine: MemberEngine {
    /// Allocated once: libbz2 checks `strm->state->strm == strm` on every call.
    private let stream: UnsafeMutablePointer<bz_stream>
    private var initialised = false

    init() throws(QBError) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: bz_stream())
    }

    deinit {
        if initialised { BZ2_bzDecompressEnd(stream) }
        stream.deallocate()
    }

    /// libbz2 cannot be reset after `BZ_STREAM_END`: end and start again on
    /// the same (stable) address.
    func startMember() throws(QBError) {
        if initialised {
            BZ2_bzDecompressEnd(stream)
            initialised = false
        }
        stream.initialize(to: bz_stream())
        let ret = BZ2_bzDecompressInit(stream, 0, 0)
        guard ret == BZ_OK else { throw Self.error(ret) }
        initialised = true
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(QBError)
        -> (consumed: Int, produced: Int, memberEnded: Bool) {
        let inCount = Swift.min(input.count, Int(UInt32.max))
        let outCount = Swift.min(output.count, Int(UInt32.max))
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: CChar.self))
        stream.pointee.avail_in = UInt32(inCount)
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: CChar.self)
        stream.pointee.avail_out = UInt32(outCount)
        let ret = BZ2_bzDecompress(stream)
        let consumed = inCount - Int(stream.pointee.avail_in)
        let produced = outCount - Int(stream.pointee.avail_out)
        stream.pointee.next_in = nil
        switch ret {
        case BZ_OK: return (consumed, produced, false)
        case BZ_STREAM_END: return (consumed, produced, true)
        default: throw Self.error(ret)
        }
    }

    /// libbz2 has no message strings for its stream API; these follow the
    /// `bzip2` program's wording.
    private static func error(_ code: Int32) -> QBError {
        switch code {
        case BZ_DATA_ERROR:
            return QBError(.malformed, "bzip2 data is corrupt (block CRC or stream CRC mismatch, or invalid block)",
                           hint: "damaged or tampered input")
        case BZ_DATA_ERROR_MAGIC:
            return QBError(.malformed, "not a bzip2 stream: bad magic", hint: "damaged or tampered input")
        case BZ_MEM_ERROR:
            return QBError(.io(12), "libbz2: out of memory")
        default:
            return QBError(.malformed, "bzip2 decoder failed (libbz2 error \(code))")
        }
    }
}
