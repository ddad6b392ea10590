internal import CZstd

/// zstd frames through libzstd's streaming decoder: several frames (zstd -T0
/// and concatenation write them) and skippable frames, with the window size
/// bounded so a hostile frame header cannot demand gigabytes.
final class ZstdDecoder: ByteSink {
    private let context: OpaquePointer
    private let output: DecodedOutput
    private let windowLogMax: Int32
    /// The last call ended exactly at a frame's end with everything flushed
    /// (libzstd returned 0): the only place the input may end.
    private var atFrameEnd = false

    init(windowLogMax: Int32, output: DecodedOutput) throws(QBError) {
        guard let context = ZSTD_createDCtx() else { throw QBError(.io(12), "libzstd: out of memory") }
        self.context = context
        self.windowLogMax = windowLogMax
        self.output = output
        let ret = ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, windowLogMax)
        if ZSTD_isError(ret) != 0 {
            ZSTD_freeDCtx(context)
            throw QBError(.malformed, "cannot bound the zstd window: \(String(cString: ZSTD_getErrorName(ret)))")
        }
    }

    deinit { ZSTD_freeDCtx(context) }

    func write(_ bytes: RawSpan) throws(QBError) {
        try bytes.withUnsafeBytes { (raw) throws(QBError) in
            var input = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            while true {
                let wasAtFrameEnd = atFrameEnd
                // Only after a frame: the first frame's magic was checked by `Decompressor`.
                if wasAtFrameEnd { try checkNextFrameMagic(raw, from: input.pos) }
                let consumedBefore = input.pos
                var ret = 0, produced = 0
                let filledUp = try output.fill { (out) throws(QBError) -> Int in
                    var o = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                    ret = ZSTD_decompressStream(context, &o, &input)
                    produced = o.pos
                    return o.pos
                }
                if ZSTD_isError(ret) != 0 { throw error(ret, afterFrameEnd: wasAtFrameEnd) }
                // A call that neither read nor wrote (the one that checks a
                // filled block was the last) reports what the next frame
                // would need, not where this one stands: a frame whose end
                // fills the block exactly would otherwise look unfinished.
                if input.pos != consumedBefore || produced > 0 { atFrameEnd = ret == 0 }
                if input.pos == input.size && !filledUp { return }
            }
        }
    }

    func finish() throws(QBError) {
        guard atFrameEnd else {
            throw QBError(.truncated, "truncated zstd stream",
                          hint: "the input ends inside a frame; a chunk or the end of the backup is missing")
        }
        try output.downstream.finish()
    }

    /// libzstd also decodes the frames of zstd 0.x (other magics) when a
    /// whole magic is in the buffer it is given at a frame's start, and
    /// refuses them when the magic is split across calls; no Qubes backup
    /// has them. Only the magics `Decompressor` accepts for a stream's first
    /// frame (zstd and skippable frames) follow a frame here, in whatever
    /// pieces the input comes (a magic split across writes reaches libzstd's
    /// own check, which refuses all but those two).
    private func checkNextFrameMagic(_ raw: UnsafeRawBufferPointer, from position: Int) throws(QBError) {
        if CompressionFormat.zstd.matchMagic(UnsafeRawBufferPointer(rebasing: raw[position...])) == .mismatch {
            throw Self.trailingGarbage
        }
    }

    private static let trailingGarbage = QBError(.malformed, "trailing garbage after zstd stream",
                                                 hint: "bytes follow the last complete frame; damaged or tampered input")

    private func error(_ code: Int, afterFrameEnd: Bool) -> QBError {
        let name = String(cString: ZSTD_getErrorName(code))
        switch ZSTD_getErrorCode(code) {
        case ZSTD_error_prefix_unknown where afterFrameEnd:
            return Self.trailingGarbage
        case ZSTD_error_frameParameter_windowTooLarge:
            return QBError(.limitExceeded, "zstd frame needs a window larger than 2^\(windowLogMax) bytes",
                           hint: "refused to bound memory; no genuine Qubes backup needs this much")
        case ZSTD_error_memory_allocation:
            return QBError(.io(12), "libzstd: out of memory")
        default:
            return QBError(.malformed, "zstd data is corrupt: \(name.lowercased())", hint: "damaged or tampered input")
        }
    }
}
