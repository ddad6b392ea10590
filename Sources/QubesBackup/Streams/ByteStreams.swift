/// Where bytes go. Transforms (decrypt, decompress, verify) are sinks that push
/// into a downstream sink, so a pipeline is a chain of sinks fed by one loop.
public protocol ByteSink: AnyObject {
    /// Accepts the next bytes of the stream. The span is only valid for the call.
    func write(_ bytes: RawSpan) throws(QBError)
    /// Accepts the unread bytes of a filled block and leaves the block empty.
    /// A sink that queues blocks for another thread (`ByteChannel`) takes
    /// the block's memory in exchange for an empty block of the same
    /// capacity instead of copying it; every other sink gets `write(_:)`.
    func write(block: IOBuffer) throws(QBError)
    /// Called once after the last write. A sink that checks a trailer (padding,
    /// gzip CRC, MAC) or renames a finished file does it here; EOF alone is
    /// never success. A transform finishes its downstream sink too.
    func finish() throws(QBError)
}

/// Where bytes come from.
public protocol ByteSource: AnyObject {
    /// Appends up to `buffer.freeCapacity` bytes to `buffer` and returns how
    /// many. Returns 0 only at the end of the stream (never for a full buffer:
    /// callers make room first).
    func read(into buffer: IOBuffer) throws(QBError) -> Int
    /// As `read(into:)`, but at most `limit` bytes: for a reader that knows
    /// it needs only a little (the headers after a skip), so that what is
    /// not needed is not read either.
    func read(into buffer: IOBuffer, atMost limit: Int) throws(QBError) -> Int
    /// Passes over up to `count` bytes without reading them, where the
    /// source can (a regular file, with lseek), and returns how many it
    /// passed. Fewer than `count` only where the input ends first; 0 when
    /// the source cannot skip (a pipe) or is at its end. Either way the
    /// caller reads next, and a read at the end returns 0 as always, so a
    /// skip never hides a truncated input (DESIGN.md, "Reading less of the
    /// backup").
    func skip(_ count: Int64) throws(QBError) -> Int64
}

extension ByteSource {
    /// Sources that cannot seek are read through.
    public func skip(_ count: Int64) throws(QBError) -> Int64 { 0 }

    /// Correct for any source, through a copy; the sources that skip, the
    /// only ones asked for small reads, read into the buffer directly.
    public func read(into buffer: IOBuffer, atMost limit: Int) throws(QBError) -> Int {
        precondition(limit > 0, "a read of nothing")
        if limit >= buffer.freeCapacity { return try read(into: buffer) }
        let small = IOBuffer(capacity: limit)
        let n = try read(into: small)
        small.withReadable { buffer.append($0) }
        return n
    }
}

/// Moves everything from `source` to `sink` in blocks of `bufferSize`,
/// then finishes the sink: the loop of the tools whose input is a file or
/// pipe.
public func pump(from source: ByteSource, to sink: ByteSink, bufferSize: Int = IOBuffer.defaultCapacity) throws(QBError) {
    let buffer = IOBuffer(capacity: bufferSize)
    while true {
        buffer.clear()
        let n = try source.read(into: buffer)
        if n == 0 { break }
        try sink.write(block: buffer)
    }
    try sink.finish()
}

/// Reads the whole of a small input, refusing more than `limit` bytes. For
/// headers, `.hmac` files and other inputs that are small by format.
public func readAll(from source: ByteSource, limit: Int, what: String) throws(QBError) -> [UInt8] {
    let buffer = IOBuffer(capacity: Swift.min(limit + 1, IOBuffer.defaultCapacity))
    var result: [UInt8] = []
    while true {
        buffer.clear()
        let n = try source.read(into: buffer)
        if n == 0 { return result }
        if result.count + n > limit {
            throw QBError(.limitExceeded, "\(what) is larger than \(limit) bytes", hint: "refused: not a genuine \(what)")
        }
        buffer.withReadable { bytes in result.append(contentsOf: bytes) }
    }
}

extension Array where Element == CChar {
    /// The text of a C string buffer, up to its first NUL.
    var stringBeforeNUL: String {
        String(decoding: prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// Appends the bytes of a span without per-byte Swift work.
    public mutating func append(contentsOf bytes: RawSpan) {
        bytes.withUnsafeBytes { self.append(contentsOf: $0) }
    }
}

extension ByteSink {
    public func write(block: IOBuffer) throws(QBError) {
        try block.withReadable { (bytes) throws(QBError) in try write(bytes) }
        block.clear()
    }

    /// Writes bytes held in an array, lent as they are: no sink needs its
    /// input in blocks (each bounds its own output), so none is copied.
    public func write(contentsOf bytes: ArraySlice<UInt8>) throws(QBError) {
        try write(bytes.span.bytes)
    }
}

/// A sink that keeps everything it is given, for small outputs and tests.
public final class MemorySink: ByteSink {
    public private(set) var bytes: [UInt8] = []
    public private(set) var finished = false
    public let limit: Int

    public init(limit: Int = Int.max) { self.limit = limit }

    public func write(_ bytes: RawSpan) throws(QBError) {
        if self.bytes.count + bytes.byteCount > limit {
            throw QBError(.limitExceeded, "output is larger than \(limit) bytes")
        }
        self.bytes.append(contentsOf: bytes)
    }

    public func finish() throws(QBError) { finished = true }
}

/// A source over bytes already in memory.
public final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(into buffer: IOBuffer) throws(QBError) -> Int {
        let n = Swift.min(buffer.freeCapacity, bytes.count - position)
        if n == 0 { return 0 }
        buffer.append(bytes[position..<(position + n)])
        position += n
        return n
    }
}

