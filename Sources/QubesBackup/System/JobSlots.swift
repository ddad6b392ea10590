import Dispatch
import Synchronization

/// The jobs allowed to run at once: `JobPlan.jobs` to begin with, one
/// fewer each time a job's allocation is refused while others run.
///
/// The plan is an estimate. When a key derivation cannot get its memory
/// anyway (RLIMIT_AS, memory taken by someone else since the plan), the
/// job gives up its slot for good and waits for a running job to finish
/// before it tries again, so the run goes on with fewer in flight. Only a
/// job that fails alone fails the run, and then as the memory failure it
/// is — never as a wrong passphrase (qubes-issues #6227, #11106).
public final class JobSlots: Sendable {
    private struct State {
        var limit: Int
        var running = 0
    }

    private let state: Mutex<State>
    /// One permit per slot not in use; a slot given up is a permit never
    /// given back.
    private let permits: DispatchSemaphore

    public init(limit: Int) {
        let limit = max(1, limit)
        state = Mutex(State(limit: limit))
        // Made at 0 and raised: libdispatch traps when a semaphore goes away
        // below the value it was made with, as this one does once a slot
        // was given up.
        permits = DispatchSemaphore(value: 0)
        for _ in 0..<limit { permits.signal() }
    }

    /// Jobs allowed at once now.
    public var limit: Int { state.withLock { $0.limit } }

    /// Slots held now.
    var running: Int { state.withLock { $0.running } }

    /// Waits for a free slot and takes it.
    public func acquire() {
        permits.wait()
        state.withLock { $0.running += 1 }
    }

    public func release() {
        state.withLock { $0.running -= 1 }
        permits.signal()
    }

    /// Runs `body` holding a slot.
    public func withSlot<Value>(_ body: () throws(QBError) -> Value) throws(QBError) -> Value {
        acquire()
        defer { release() }
        return try body()
    }

    /// For a job holding a slot whose allocation was just refused. With
    /// other jobs running, gives its slot up for good — one job fewer from
    /// now on — and waits until a slot is free again, which is when a
    /// running job has finished and let go of its memory: returns true, the
    /// job holding a slot, to try again. Alone, returns false at once and
    /// keeps the slot: fewer jobs cannot help.
    public func giveWayAfterShortage() -> Bool {
        let gaveWay = state.withLock { s -> Bool in
            guard s.running > 1 else { return false }
            s.running -= 1
            s.limit -= 1
            return true
        }
        if gaveWay { acquire() }
        return gaveWay
    }
}
