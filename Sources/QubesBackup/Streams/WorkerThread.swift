#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own for a stage that blocks (a pull parser reading a
/// `ByteChannel`): Dispatch's pool is kept for the short, CPU-bound jobs
/// (key derivations, MACs), so a blocked stage can never starve them.
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

    /// Waits for the thread and returns what it returned or threw.
    public func join() -> Result<Value, QBError> {
        if !joined {
            pthread_join(thread, nil)
            joined = true
        }
        return cell.result ?? .failure(QBError(.internalError, "worker thread ended without a result"))
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
