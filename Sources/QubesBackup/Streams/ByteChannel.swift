import Dispatch
import Synchronization

/// A bounded hand-over of bytes from one thread to another: the writing side
/// is a `ByteSink` at the end of a push pipeline (decrypt, decompress), the
/// reading side a `ByteSource` for a pull parser (`TarReader`) running on
/// its own thread. It lets one process stream a backed-up file through all
/// stages at once, the way a shell pipeline does, with memory bounded by
/// `blocks` copies of the largest write.
///
/// Either side can fail: a failed reader makes the next write throw
/// `ByteChannel.readerStopped` (the writer then collects the reader's own
/// error), and a failed writer makes the reader throw the writer's error.
/// Volume marks let a multi-volume archive (v2) travel through one channel.
public final class ByteChannel: @unchecked Sendable {
    // @unchecked: what both sides touch is inside `state`, behind its
    // lock; the reading side's own fields (`pending`, the end flags) are
    // used only by the one reader thread; the semaphores are thread-safe.
    /// @unchecked: a block changes hands whole — the writer keeps no
    /// reference to a block it queued, the reader none to a block it gave
    /// back — so one thread at a time uses it.
    private enum Item: @unchecked Sendable {
        case block(IOBuffer)
        case endOfVolume
        case end
    }

    private struct State {
        var queue: [Item] = []
        var head = 0
        var writerError: QBError?
        var readerStopped = false
        /// Empty blocks for the writer's next exchange or copy: fresh
        /// memory costs a zeroed page per 4 KiB, reused memory nothing.
        var spares: [Spare] = []
    }

    /// An empty block; @unchecked for the same reason as `Item`.
    private struct Spare: @unchecked Sendable { let block: IOBuffer }

    /// What a write throws once the reader has stopped; the reader's own
    /// error is the one to report.
    public static let readerStopped = QBError(.cancelled, "the reading side stopped")

    private let state = Mutex(State())
    private let slots: DispatchSemaphore
    private let items = DispatchSemaphore(value: 0)

    private let blocks: Int
    /// Capacity of every block the channel queues.
    public let blockSize: Int

    public init(blocks: Int = 4, blockSize: Int = IOBuffer.defaultCapacity) {
        self.blocks = max(1, blocks)
        self.blockSize = max(1, blockSize)
        // Made at 0 and raised: libdispatch traps ("semaphore object
        // deallocated while in use") when a semaphore goes away below the
        // value it was created with, which is how a channel is left when its
        // reader stops early with blocks still queued (a refused inner
        // archive) — qb-restore then died of SIGILL instead of reporting.
        slots = DispatchSemaphore(value: 0)
        for _ in 0..<self.blocks { slots.signal() }
    }

    // MARK: writing side

    private func put(_ item: Item) throws(QBError) {
        if state.withLock({ $0.readerStopped }) { throw Self.readerStopped }
        slots.wait()
        let stopped = state.withLock { s -> Bool in
            if s.readerStopped { return true }
            s.queue.append(item)
            return false
        }
        if stopped { slots.signal(); throw Self.readerStopped }
        items.signal()
    }

    private func spare() -> IOBuffer {
        state.withLock { $0.spares.popLast() }?.block ?? IOBuffer(capacity: blockSize)
    }

    /// Copies `bytes` into blocks of the channel's size.
    public func write(_ bytes: RawSpan) throws(QBError) {
        var rest = bytes
        while rest.byteCount > 0 {
            let n = min(rest.byteCount, blockSize)
            let block = spare()
            block.append(rest.extracting(0..<n))
            rest = rest.extracting(n...)
            try put(.block(block))
        }
    }

    /// Queues `block`'s memory itself when it has the channel's size; the
    /// caller gets an empty spare of that size in exchange.
    public func write(block: IOBuffer) throws(QBError) {
        guard block.capacity == blockSize else {
            try block.withReadable { (bytes) throws(QBError) in try write(bytes) }
            block.clear()
            return
        }
        if block.isEmpty { return }
        let queued = spare()
        queued.exchange(with: block)
        try put(.block(queued))
    }

    /// Ends the current volume; the reader's volume source returns end of
    /// input and the next `nextVolume()` starts on what follows.
    public func endVolume() throws(QBError) { try put(.endOfVolume) }

    /// Ends the stream.
    public func finish() throws(QBError) { try put(.end) }

    /// The writer failed: the reader throws `error` at its next read.
    public func abort(_ error: QBError) {
        state.withLock { if $0.writerError == nil { $0.writerError = error } }
        items.signal()
    }

    // MARK: reading side

    /// The reader failed or is done early: writers stop.
    public func stopReading() {
        state.withLock { $0.readerStopped = true }
        slots.signal()
    }

    /// The block being read, and how the stream stands.
    private var pending: IOBuffer?
    private var atVolumeEnd = false
    private var atEnd = false

    private func take() throws(QBError) -> Item {
        while true {
            items.wait()
            let result = state.withLock { s -> Result<Item, QBError>? in
                if s.head < s.queue.count {
                    let item = s.queue[s.head]
                    s.queue[s.head] = .end
                    s.head += 1
                    if s.head == s.queue.count { s.queue.removeAll(keepingCapacity: true); s.head = 0 }
                    return .success(item)
                }
                if let e = s.writerError { return .failure(e) }
                return nil
            }
            switch result {
            case .success(let item)?:
                slots.signal()
                return item
            case .failure(let error)?:
                items.signal()  // later reads see the error too
                throw error
            case nil:
                continue
            }
        }
    }

    /// Takes the next item; false at a volume's or the stream's end.
    private func takeBlock() throws(QBError) -> Bool {
        switch try take() {
        case .block(let b): pending = b; return true
        case .endOfVolume: atVolumeEnd = true; return false
        case .end: atEnd = true; return false
        }
    }

    /// Reads within the current volume; 0 at its end (or the stream's).
    fileprivate func readVolume(into buffer: IOBuffer) throws(QBError) -> Int {
        while pending?.isEmpty ?? true {
            if let empty = pending { pending = nil; giveBack(empty) }
            if atVolumeEnd || atEnd { return 0 }
            _ = try takeBlock()
        }
        let block = pending!
        if buffer.capacity == block.capacity && buffer.freeCapacity == buffer.capacity {
            // The reader's buffer is empty and of the block's size: lend it
            // the block itself.
            buffer.exchange(with: block)
            pending = nil
            giveBack(block)
            return buffer.readableCount
        }
        let n = min(buffer.freeCapacity, block.readableCount)
        block.withReadable { bytes in buffer.append(bytes.extracting(0..<n)) }
        block.consume(n)
        if block.isEmpty {
            pending = nil
            giveBack(block)
        }
        return n
    }

    private func giveBack(_ block: IOBuffer) {
        block.clear()
        let spare = Spare(block: block)
        state.withLock { s in
            if s.spares.count < blocks { s.spares.append(spare) }
        }
    }

    /// Moves past a volume end; false at the end of the stream.
    fileprivate func startNextVolume() throws(QBError) -> Bool {
        // Drop whatever the reader left of the current volume.
        if let block = pending {
            pending = nil
            giveBack(block)
        }
        while !atVolumeEnd && !atEnd {
            if try takeBlock() {
                giveBack(pending!)
                pending = nil
            }
        }
        if atEnd { return false }
        atVolumeEnd = false
        // A stream that ends right after a volume end has no further volume.
        if try takeBlock() { return true }
        if atVolumeEnd { return true }
        return false
    }

    /// The reading side as one stream: volume marks are not expected.
    public var source: ByteSource { ChannelSource(channel: self) }

    /// The reading side as the volumes of a multi-volume archive.
    public var volumes: TarVolumeSequence { ChannelVolumes(channel: self) }
}

extension ByteChannel: ByteSink {}

private final class ChannelSource: ByteSource {
    let channel: ByteChannel
    init(channel: ByteChannel) { self.channel = channel }
    func read(into buffer: IOBuffer) throws(QBError) -> Int { try channel.readVolume(into: buffer) }
}

private final class ChannelVolumes: TarVolumeSequence {
    let channel: ByteChannel
    var started = false
    init(channel: ByteChannel) { self.channel = channel }

    func nextVolume() throws(QBError) -> ByteSource? {
        if !started {
            started = true
            return ChannelSource(channel: channel)
        }
        return try channel.startNextVolume() ? ChannelSource(channel: channel) : nil
    }
}

/// A ByteSink over one volume of a channel: finishing it ends the volume,
/// not the stream (one v2 chunk's decrypt → decompress chain ends here).
public final class ChannelVolumeSink: ByteSink {
    private let channel: ByteChannel
    public init(_ channel: ByteChannel) { self.channel = channel }
    public func write(_ bytes: RawSpan) throws(QBError) { try channel.write(bytes) }
    public func write(block: IOBuffer) throws(QBError) { try channel.write(block: block) }
    public func finish() throws(QBError) { try channel.endVolume() }
}
