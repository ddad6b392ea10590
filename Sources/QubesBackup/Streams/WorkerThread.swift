#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own: every concurrent piece of a restore runs on one —
/// the inner archive's pull parser reading a `ByteChannel`, each chunk's
/// key derivation or MAC (`InOrderJobs`), the early v4 derivation. Each
/// may block without holding up any other, which a fixed pool cannot
/// promise.
public final class WorkerThread<Value: Sendable> {
    /// Written by the thread before it exits, read only after pthread_join.
    private final class Cell: @unchecked Sendable {
        let body: () -> Result<Value, QBError>
        var result: Result<Value, QBError>?
        init(_ body: @escaping () -> Result<Value, QBError>) { self.body = body }
        func run() { result = body() }
    }

    private var thread = pthread_t()
    private let cell: Cell
    private var joined = false

    public init(_ body: @escaping @Sendable () throws(QBError) -> Value) throws(QBError) {
        let cell = Cell { Result { () throws(QBError) -> Value in try body() } }
        self.cell = cell
        // The thread owns one reference to the box until it has run.
        let context = Unmanaged.passRetained(ThreadBox(cell.run)).toOpaque()
        let code = pthread_create(&thread, nil, threadEntry, context)
        if code != 0 {
            Unmanaged<ThreadBox>.fromOpaque(context).release()
            joined = true
            throw QBError(.io(code), "cannot start a thread")
        }
    }

    /// Waits for the thread and hands over what it returned or threw; the
    /// thread keeps no reference to it (a chunk's memory can then be
    /// reused). A second call has nothing left to hand over.
    public func join() -> Result<Value, QBError> {
        if !joined {
            pthread_join(thread, nil)
            joined = true
        }
        return cell.result.take() ?? .failure(QBError(.internalError, "worker thread result already taken, or none"))
    }

    deinit { if !joined { pthread_join(thread, nil) } }
}

private final class ThreadBox {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

private func threadEntry(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue().run()
    return nil
}
