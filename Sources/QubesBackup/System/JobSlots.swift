import Dispatch
import Synchronization

/// The jobs allowed to run at once, counted two ways: at most `limit` of
/// them (`JobPlan.jobs` to begin with), holding at most `memoryBudget`
/// bytes together (the memory available when the plan was made). Each job
/// says what it will hold — its chunk and its key derivation — so a chunk
/// whose scrypt parameters need more than the plan's first envelope (scrypt
/// enc chooses them afresh for every chunk) waits for room instead of
/// overrunning a memory cgroup, whose kernel kills rather than refuses. A
/// job alone always runs: the scrypt limits already keep it within what
/// is available.
///
/// The plan is an estimate. When a key derivation cannot get its memory
/// anyway (RLIMIT_AS, memory taken by someone else since the plan), the
/// job gives up its slot for good and waits for a running job to finish
/// before it tries again, so the run goes on with fewer in flight. Only a
/// job that fails alone fails the run, and then as the memory failure it
/// is — never as a wrong passphrase (qubes-issues #6227, #11106).
///
/// Slots are granted in the order they were asked for, so the oldest chunk,
/// the one the caller delivers next, is never passed over.
public final class JobSlots: Sendable {
    private struct Waiter {
        let bytes: Int
        let granted: DispatchSemaphore
    }

    private struct State {
        var limit: Int
        let memoryBudget: Int
        var running = 0
        var held = 0
        var waiting: [Waiter] = []

        func fits(_ bytes: Int) -> Bool {
            running < limit && (running == 0 || bytes <= memoryBudget - held)
        }

        /// Takes slots for the waiters at the head of the queue that fit
        /// now; returns what to signal once the lock is let go.
        mutating func grant() -> [DispatchSemaphore] {
            var granted: [DispatchSemaphore] = []
            while let next = waiting.first, fits(next.bytes) {
                waiting.removeFirst()
                running += 1
                held += next.bytes
                granted.append(next.granted)
            }
            return granted
        }
    }

    private let state: Mutex<State>

    public init(limit: Int, memoryBudget: Int = .max) {
        state = Mutex(State(limit: max(1, limit), memoryBudget: max(0, memoryBudget)))
    }

    /// The slots a plan allows: its jobs, and the memory it found available.
    public convenience init(plan: JobPlan) {
        self.init(limit: plan.jobs, memoryBudget: plan.resources.availableMemory)
    }

    /// Jobs allowed at once now.
    public var limit: Int { state.withLock { $0.limit } }

    /// Slots held now.
    var running: Int { state.withLock { $0.running } }

    /// Waits for a slot with room for `bytes` and takes it.
    public func acquire(bytes: Int = 0) {
        let wait = state.withLock { s -> DispatchSemaphore? in
            if s.waiting.isEmpty && s.fits(bytes) {
                s.running += 1
                s.held += bytes
                return nil
            }
            let granted = DispatchSemaphore(value: 0)
            s.waiting.append(Waiter(bytes: bytes, granted: granted))
            return granted
        }
        wait?.wait()
    }

    /// Gives back a slot taken for `bytes`.
    public func release(bytes: Int = 0) {
        let granted = state.withLock { s -> [DispatchSemaphore] in
            s.running -= 1
            s.held -= bytes
            return s.grant()
        }
        for semaphore in granted { semaphore.signal() }
    }

    /// Runs `body` holding a slot with room for `bytes`.
    public func withSlot<Value>(bytes: Int = 0, _ body: () throws(QBError) -> Value) throws(QBError) -> Value {
        acquire(bytes: bytes)
        defer { release(bytes: bytes) }
        return try body()
    }

    /// For a job holding a slot whose allocation was just refused. With
    /// other jobs running, gives its slot up for good — one job fewer from
    /// now on — and waits, first in line, until a running job has finished
    /// and let go of its memory: returns true, the job holding a slot
    /// again, to try again. Its bytes stay counted meanwhile: it is the
    /// memory it needs back. Alone, returns false at once and keeps the
    /// slot: fewer jobs cannot help.
    public func giveWayAfterShortage() -> Bool {
        let wait = state.withLock { s -> DispatchSemaphore? in
            guard s.running > 1 else { return nil }
            s.running -= 1
            s.limit -= 1
            let granted = DispatchSemaphore(value: 0)
            s.waiting.insert(Waiter(bytes: 0, granted: granted), at: 0)
            return granted
        }
        guard let wait else { return false }
        wait.wait()
        return true
    }

    /// Runs `allocate`, which allocates (a key derivation) in a job holding
    /// one of `slots`, and tries again when it fails `.outOfMemory`: after
    /// giving way while other jobs run, and once more alone — jobs refused
    /// at the same moment may have let go of their memory since, and a
    /// refused mmap costs nothing to retry. The error of the last try
    /// otherwise. Without slots, the caller is alone.
    public static func retryingShortage<Value>(_ slots: JobSlots?, _ allocate: () throws(QBError) -> Value) throws(QBError) -> Value {
        var retriedAlone = false
        while true {
            do throws(QBError) {
                return try allocate()
            } catch {
                guard error.kind == .outOfMemory else { throw error }
                if let slots, slots.giveWayAfterShortage() { continue }
                if retriedAlone { throw error }
                retriedAlone = true
            }
        }
    }
}
