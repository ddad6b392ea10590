internal import CLzma

/// xz streams through liblzma, one stream per member. `MemberDecoder` strings
/// them together and skips the stream padding between them, as `xz -d` does.
/// liblzma's own `LZMA_CONCATENATED` mode would do both, but cannot tell
/// trailing garbage from a truncated stream; doing the boundary ourselves
/// keeps those failures distinct.
final class XzEngine: MemberEngine {
    /// Allocated once: liblzma keeps internal pointers tied to the stream.
    private let stream: UnsafeMutablePointer<lzma_stream>
    private let memoryLimit: UInt64

    init(memoryLimit: UInt64) throws(QBError) {
        self.memoryLimit = memoryLimit
        stream = .allocate(capacity: 1)
        stream.initialize(to: lzma_stream())
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
    }

    /// Initialising again on the same stream reuses liblzma's allocations.
    func startMember() throws(QBError) {
        // Flags 0: verify the check, stop after one stream's footer.
        let ret = lzma_stream_decoder(stream, memoryLimit, 0)
        guard ret == LZMA_OK else { throw lzmaError(ret, .xz, memoryLimit) }
    }

    func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(QBError)
        -> (consumed: Int, produced: Int, memberEnded: Bool) {
        stream.pointee.next_in = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_in = input.count
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = output.count
        let ret = lzma_code(stream, LZMA_RUN)
        let consumed = input.count - stream.pointee.avail_in
        let produced = output.count - stream.pointee.avail_out
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        switch ret {
        case LZMA_OK, LZMA_BUF_ERROR: return (consumed, produced, false)
        case LZMA_STREAM_END: return (consumed, produced, true)
        default: throw lzmaError(ret, .xz, memoryLimit)
        }
    }
}

/// Legacy LZMA-alone (`.lzma`, what `lzma` writes): one stream, no magic, no
/// concatenation; it ends at its end marker or declared size.
final class LzmaAloneDecoder: ByteSink {
    /// Allocated once: liblzma keeps internal pointers tied to the stream.
    private let stream: UnsafeMutablePointer<lzma_stream>
    private let format = CompressionFormat.lzma
    private let output: DecodedOutput
    private let memoryLimit: UInt64
    /// The end marker (or the declared size) was reached.
    private var ended = false

    init(memoryLimit: UInt64, output: DecodedOutput) throws(QBError) {
        self.memoryLimit = memoryLimit
        self.output = output
        stream = .allocate(capacity: 1)
        stream.initialize(to: lzma_stream())
        let ret = lzma_alone_decoder(stream, memoryLimit)
        guard ret == LZMA_OK else {
            stream.deallocate()
            throw lzmaError(ret, .lzma, memoryLimit)
        }
    }

    deinit {
        lzma_end(stream)
        stream.deallocate()
    }

    func write(_ bytes: RawSpan) throws(QBError) {
        try bytes.withUnsafeBytes { (raw) throws(QBError) in
            if raw.isEmpty { return }
            if ended { throw trailingGarbage() }
            stream.pointee.next_in = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            stream.pointee.avail_in = raw.count
            defer { stream.pointee.next_in = nil; stream.pointee.avail_in = 0 }
            try run(LZMA_RUN)
            if ended && stream.pointee.avail_in > 0 { throw trailingGarbage() }
        }
    }

    func finish() throws(QBError) {
        if !ended { try run(LZMA_FINISH) }
        if !ended {
            throw QBError(.truncated, "truncated \(format.rawValue) stream",
                          hint: "the input ends inside the stream; a chunk or the end of the backup is missing")
        }
        try output.downstream.finish()
    }

    /// Calls `lzma_code` until the input is used up and the output block is
    /// not full, or the stream ends.
    private func run(_ action: lzma_action) throws(QBError) {
        while true {
            var ret = LZMA_OK
            let filledUp = try output.fill { (out) throws(QBError) -> Int in
                stream.pointee.next_out = out.baseAddress?.assumingMemoryBound(to: UInt8.self)
                stream.pointee.avail_out = out.count
                ret = lzma_code(stream, action)
                let produced = out.count - stream.pointee.avail_out
                stream.pointee.next_out = nil
                stream.pointee.avail_out = 0
                return produced
            }
            switch ret {
            case LZMA_STREAM_END:
                ended = true
                return
            case LZMA_OK:
                if stream.pointee.avail_in == 0 && !filledUp { return }
            case LZMA_BUF_ERROR where action == LZMA_FINISH:
                // No progress possible with no more input: the stream is cut.
                return
            default:
                throw lzmaError(ret, format, memoryLimit)
            }
        }
    }

    private func trailingGarbage() -> QBError {
        QBError(.malformed, "trailing garbage after \(format.rawValue) stream",
                hint: "bytes follow the end of the stream; damaged or tampered input")
    }
}

/// liblzma returns codes only; the wording follows `xz`'s messages.
private func lzmaError(_ ret: lzma_ret, _ format: CompressionFormat, _ limit: UInt64) -> QBError {
    let name = format.rawValue
    switch ret {
    case LZMA_MEMLIMIT_ERROR:
        return QBError(.limitExceeded, "\(name) stream needs more than \(limit >> 20) MiB of memory to decode",
                       hint: "refused to bound memory; no genuine Qubes backup needs this much")
    case LZMA_MEM_ERROR:
        return QBError(.io(12), "liblzma: out of memory")
    case LZMA_FORMAT_ERROR:
        return QBError(.malformed, "not an \(name) stream: file format not recognized", hint: "damaged input, or the wrong filter")
    case LZMA_OPTIONS_ERROR:
        return QBError(.malformed, "\(name) stream uses unsupported options", hint: "damaged input, or written by a newer xz")
    case LZMA_UNSUPPORTED_CHECK:
        return QBError(.unsupported, "\(name) stream uses an unsupported integrity check")
    case LZMA_DATA_ERROR:
        return QBError(.malformed, "\(name) data is corrupt", hint: "damaged or tampered input")
    case LZMA_BUF_ERROR:
        return QBError(.truncated, "truncated \(name) stream")
    default:
        return QBError(.malformed, "\(name) decoder failed (liblzma error \(ret.rawValue))")
    }
}
