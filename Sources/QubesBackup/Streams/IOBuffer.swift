/// One reusable, fixed-capacity byte buffer: the unread bytes are
/// `[start, end)` of the storage. All pointer work on it stays in this file and
/// in the C-call wrappers that fill or drain it.
public final class IOBuffer {
    /// 1 MiB: large enough that syscalls and C-library calls dominate, small
    /// enough to stay in cache-friendly territory.
    public static let defaultCapacity = 1 << 20

    /// Owned by this buffer until `exchange(with:)` trades it, then by the
    /// other: each allocation is freed once, by whichever buffer holds it.
    private var storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0

    public init(capacity: Int = IOBuffer.defaultCapacity) {
        precondition(capacity > 0)
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    public var capacity: Int { storage.count }
    /// Bytes written and not yet consumed.
    public var readableCount: Int { end - start }
    /// Room left at the end.
    public var freeCapacity: Int { storage.count - end }
    public var isEmpty: Bool { start == end }

    /// Forgets all content.
    public func clear() { start = 0; end = 0 }

    /// Moves unread bytes to the front so the whole free space is at the end.
    public func compact() {
        if start == 0 { return }
        let n = end - start
        if n > 0 { storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: n) }
        start = 0
        end = n
    }

    /// Marks `count` unread bytes as consumed.
    public func consume(_ count: Int) {
        precondition(count >= 0 && count <= readableCount)
        start += count
        if start == end { start = 0; end = 0 }
    }

    /// Lends the unread bytes.
    public func withReadable<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: storage[start..<end])))
    }

    /// Trades everything, storage and unread range, with `other`: a stage
    /// hands a filled block on, and takes an empty one back, without copying
    /// a byte. Spans lent by `withReadable` end with their closure, so none
    /// can outlive the trade. Both must have the same capacity, which so
    /// stays fixed.
    public func exchange(with other: IOBuffer) {
        precondition(capacity == other.capacity, "IOBuffer exchange of unequal capacities")
        swap(&storage, &other.storage)
        swap(&start, &other.start)
        swap(&end, &other.end)
    }

    /// Copies `bytes` in after the unread bytes; they must fit.
    public func append(_ bytes: RawSpan) {
        precondition(bytes.byteCount <= freeCapacity, "IOBuffer overflow")
        bytes.withUnsafeBytes { src in
            if src.count > 0 { (storage.baseAddress! + end).copyMemory(from: src.baseAddress!, byteCount: src.count) }
        }
        end += bytes.byteCount
    }

    /// Copies array bytes in after the unread bytes; they must fit.
    public func append(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { append(RawSpan(_unsafeBytes: $0)) }
    }

    /// For C-call wrappers: lets `body` fill the free space and commits the
    /// number of bytes it reports.
    package func fillFreeSpace(_ body: (UnsafeMutableRawBufferPointer) throws(QBError) -> Int) throws(QBError) -> Int {
        let n = try body(UnsafeMutableRawBufferPointer(rebasing: storage[end...]))
        precondition(n >= 0 && n <= storage.count - end)
        end += n
        return n
    }

    /// For C-call wrappers whose failure is a return code: `body` returns the
    /// number of bytes it produced, or nil on failure (nothing is committed).
    package func fillFreeSpace(reporting body: (UnsafeMutableRawBufferPointer) -> Int?) -> Bool {
        guard let n = body(UnsafeMutableRawBufferPointer(rebasing: storage[end...])) else { return false }
        precondition(n >= 0 && n <= storage.count - end)
        end += n
        return true
    }
}
