/// Which deflate implementation decodes gzip streams. Both check the same
/// things (header, CRC-32, ISIZE, member boundaries); ISA-L is several times
/// faster, zlib is the reference kept for comparison and as a fallback.
public enum Inflater: String, CaseIterable, Sendable {
    case isal, zlib
}

/// Knobs of the decoders; the defaults suit any genuine Qubes backup.
public struct DecompressionOptions: Sendable {
    /// gzip/pigz decoder.
    public var inflater: Inflater = .isal
    /// Most memory an xz or lzma stream may make liblzma allocate. `xz -9`
    /// needs about 65 MiB to decode; a header asking for more is refused
    /// (`.limitExceeded`) rather than allocated.
    public var lzmaMemoryLimit: UInt64 = 256 << 20
    /// Largest zstd window accepted, as a power of two: 2^27 = 128 MiB,
    /// zstd's own default limit (larger windows need `zstd --long`).
    public var zstdWindowLogMax: Int32 = 27
    /// Most decompressed bytes passed downstream; more is `.limitExceeded`.
    /// The tools leave it unlimited (the inner archive's own checks bound
    /// what is kept); the fuzz targets set it so that one small input
    /// cannot make a run take minutes.
    public var outputLimit: UInt64 = .max
    /// Most bytes passed downstream in one write, and the size of the one
    /// output block every decoder holds. Smaller blocks cost more calls;
    /// tests and fuzzing use them to reach the block-boundary paths with
    /// small inputs.
    public var blockSize: Int = IOBuffer.defaultCapacity

    public init() {}
}

/// Makes the decompressing sink for `filter`, or for the format recognised by
/// its magic bytes when `filter` is nil (`auto`). The result is a `ByteSink`
/// transform: compressed bytes written to it come out decompressed in
/// `downstream`, in blocks of at most `options.blockSize` bytes; `finish()`
/// succeeds only at the format's proper end (FORMAT.md §7.4) and then
/// finishes `downstream`.
///
/// Errors: magic bytes that do not match the named filter → `.malformed`;
/// unknown magic under `auto` → `.unsupported`; input ending early →
/// `.truncated`; corrupt data, bad checksums, trailing garbage → `.malformed`;
/// a stream needing more memory, or producing more output, than `options`
/// allow → `.limitExceeded`.
public func makeDecompressor(_ filter: CompressionFilter?, downstream: ByteSink,
                             options: DecompressionOptions = DecompressionOptions()) -> ByteSink {
    Decompressor(filter: filter, downstream: downstream, options: options)
}

/// Holds back the first bytes until the format is known, checks them against
/// the named filter (or recognises them under `auto`), then hands everything
/// to the format's decoder. Magic that contradicts the header's filter is an
/// error, not a reason to guess (FORMAT.md §7.2).
public final class Decompressor: ByteSink {
    public let filter: CompressionFilter?
    private let downstream: ByteSink
    private let options: DecompressionOptions
    /// The first bytes, while the format is still being decided.
    private var head: [UInt8] = []
    private var decoder: ByteSink?

    /// See `makeDecompressor(_:downstream:options:)`.
    public init(filter: CompressionFilter?, downstream: ByteSink, options: DecompressionOptions = DecompressionOptions()) {
        self.filter = filter
        self.downstream = downstream
        self.options = options
    }

    /// The format being decoded, once the first bytes have decided it.
    public private(set) var format: CompressionFormat?

    public func write(_ bytes: RawSpan) throws(QBError) {
        if let decoder { return try decoder.write(bytes) }
        try bytes.withUnsafeBytes { (raw) throws(QBError) in
            var rest = raw
            if head.isEmpty, let format = try decide(raw, atEnd: false) {
                try start(format)
            } else {
                // Hold the first bytes until they decide; at most the longest magic.
                let take = Swift.min(rest.count, CompressionFormat.longestMagic - head.count)
                head.append(contentsOf: rest.prefix(take))
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                guard let format = try head.withBytes({ (h) throws(QBError) in try decide(h, atEnd: false) }) else { return }
                try start(format)
                try releaseHead()
            }
            if !rest.isEmpty { try decoder!.write(RawSpan(_unsafeBytes: rest)) }
        }
    }

    private func releaseHead() throws(QBError) {
        let held = head
        head = []
        try held.withBytes { (h) throws(QBError) in try decoder!.write(RawSpan(_unsafeBytes: h)) }
    }

    public func finish() throws(QBError) {
        if decoder == nil {
            let what = filter.map { "\($0.format.rawValue) stream" } ?? "compressed stream"
            if head.isEmpty {
                throw QBError(.truncated, "truncated input: empty where a \(what) was expected")
            }
            // A short input: decide what it is, as far as it goes.
            guard let decided = try head.withBytes({ (h) throws(QBError) in try decide(h, atEnd: true) }) else {
                throw QBError(.truncated, "truncated input: too short to recognise a compression format")
            }
            try start(decided)
            try releaseHead()
        }
        try decoder!.finish()
    }

    /// Returns the format once `prefix` decides it, nil while more bytes are
    /// needed; throws when the prefix contradicts the named filter or, under
    /// `auto`, matches no format. At the end of input a consistent but short
    /// prefix is truncated.
    private func decide(_ prefix: UnsafeRawBufferPointer, atEnd: Bool) throws(QBError) -> CompressionFormat? {
        if let filter {
            let format = filter.format
            switch format.matchMagic(prefix) {
            case .match: return format
            case .partial:
                if atEnd { throw QBError(.truncated, "truncated \(format.rawValue) stream", hint: "the input ends inside the magic bytes") }
                return nil
            case .mismatch:
                var hint = "the data may be damaged, or not compressed with \(filter.rawValue)"
                if let other = CompressionFormat.detect(prefix).format {
                    hint = "the data looks like \(other.rawValue); qb does not guess, name the right filter"
                }
                throw QBError(.malformed, "not a \(format.rawValue) stream (magic bytes do not match filter '\(filter.rawValue)')", hint: hint)
            }
        }
        let (format, complete) = CompressionFormat.detect(prefix)
        if let format { return format }
        if complete || atEnd {
            if atEnd && !complete {
                throw QBError(.truncated, "truncated input: too short to recognise a compression format")
            }
            throw QBError(.unsupported, "unknown compression format",
                          hint: "no known magic bytes; name the filter, which lzma streams always need")
        }
        return nil
    }

    private func start(_ format: CompressionFormat) throws(QBError) {
        self.format = format
        decoder = try makeFormatDecoder(format, downstream: downstream, options: options)
    }
}

/// The decoder of one format, without any magic-byte policy of its own
/// beyond what each format checks for its later members.
func makeFormatDecoder(_ format: CompressionFormat, downstream: ByteSink, options: DecompressionOptions) throws(QBError) -> ByteSink {
    let output = DecodedOutput(downstream: downstream, limit: options.outputLimit, blockSize: options.blockSize)
    switch format {
    case .gzip:
        switch options.inflater {
        case .isal: return MemberDecoder(format: .gzip, engine: try IsalGzipEngine(), output: output)
        case .zlib: return MemberDecoder(format: .gzip, engine: try ZlibGzipEngine(), output: output)
        }
    case .bzip2: return MemberDecoder(format: .bzip2, engine: try Bzip2Engine(), output: output)
    case .xz: return MemberDecoder(format: .xz, engine: try XzEngine(memoryLimit: options.lzmaMemoryLimit), output: output)
    case .lzma: return try LzmaAloneDecoder(memoryLimit: options.lzmaMemoryLimit, output: output)
    case .zstd: return try ZstdDecoder(windowLogMax: options.zstdWindowLogMax, output: output)
    }
}

/// The output side every decoder shares: one block that a C call fills and
/// that is handed downstream at once — so memory stays bounded whatever the
/// compression ratio. A channel downstream takes the filled block and gives
/// back an empty one of the same size.
final class DecodedOutput {
    private let block: IOBuffer
    let downstream: ByteSink
    private let limit: UInt64
    private var total: UInt64 = 0

    init(downstream: ByteSink, limit: UInt64 = .max, blockSize: Int = IOBuffer.defaultCapacity) {
        self.downstream = downstream
        self.limit = limit
        self.block = IOBuffer(capacity: Swift.max(blockSize, 1))
    }

    /// Lets `body` fill the empty block, passes on what it produced, and
    /// reports whether the block was filled up (the library may hold more).
    func fill(_ body: (UnsafeMutableRawBufferPointer) throws(QBError) -> Int) throws(QBError) -> Bool {
        block.clear()
        let produced = try block.fillFreeSpace(body)
        total += UInt64(produced)
        if total > limit {
            throw QBError(.limitExceeded, "decompressed data is larger than \(limit) bytes", hint: "refused: more than the expected size")
        }
        let filled = produced == block.capacity
        if produced > 0 { try downstream.write(block: block) }
        return filled
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` keeping the closure's typed error (the standard
    /// library's version rethrows `any Error`).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(QBError) -> R) throws(QBError) -> R {
        try withUnsafeBytes { raw in Result { () throws(QBError) in try body(raw) } }.get()
    }
}
