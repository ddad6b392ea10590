/// Runs CPU-bound jobs (key derivations, MACs) on other threads while their
/// results are used in submission order on the caller's thread — so a
/// backed-up file's plaintext is written in order while the next chunks
/// are already being derived and authenticated.
///
/// At most `slots.limit` jobs run at once and at most one more waits for
/// delivery, which bounds memory to that many chunks (plus what each job
/// allocates). The limit can fall while jobs run (`JobSlots`); fewer are
/// then started. Steps queued with `then` run after everything queued
/// before them was delivered.
public final class InOrderJobs {
    private enum Entry {
        case job(WorkerThread<[UInt8]>, deliver: (consuming [UInt8]) throws(QBError) -> Void)
        case step(() throws(QBError) -> Void)
    }

    /// Lets `slots.limit` jobs compute at once; the one job more that may
    /// be started waits there, its chunk already read.
    public let slots: JobSlots
    /// Told, on the caller's thread, when the limit has fallen.
    private let limitLowered: (Int) -> Void
    private var limitTold: Int
    private var entries: [Entry] = []
    private var head = 0
    private var jobsWaiting = 0

    public init(slots: JobSlots, limitLowered: @escaping (Int) -> Void = { _ in }) {
        self.slots = slots
        self.limitLowered = limitLowered
        limitTold = slots.limit
    }

    /// Starts `work` on a thread of its own and queues `deliver` for its
    /// result; delivers older results first when too many are waiting. A
    /// thread per job costs microseconds against a chunk's milliseconds to
    /// seconds, and no job can then wait behind a blocked one. `work` runs
    /// holding one of `slots`, which it is given, with room for the
    /// `memory` bytes it says it will hold.
    public func submit(memory: Int = 0, _ work: @escaping @Sendable (JobSlots) throws(QBError) -> [UInt8],
                       deliver: @escaping (consuming [UInt8]) throws(QBError) -> Void) throws(QBError) {
        let slots = self.slots
        do throws(QBError) {
            let job = try WorkerThread { () throws(QBError) -> [UInt8] in
                try slots.withSlot(bytes: memory) { () throws(QBError) -> [UInt8] in try work(slots) }
            }
            entries.append(.job(job, deliver: deliver))
            jobsWaiting += 1
            while jobsWaiting > slots.limit { try deliverOldest() }
        } catch {
            cancel()
            throw error
        }
    }

    /// Queues `step` behind everything submitted so far.
    public func then(_ step: @escaping () throws(QBError) -> Void) {
        entries.append(.step(step))
    }

    /// Delivers everything queued, in order.
    public func drain() throws(QBError) {
        do throws(QBError) {
            while head < entries.count { try deliverOldest() }
        } catch {
            cancel()
            throw error
        }
    }

    /// Waits for the jobs still running and forgets them. Callers must not
    /// let an error unwind to exit() while a job is inside OpenSSL, whose
    /// cleanup at exit would pull its state from under the job.
    public func cancel() {
        while head < entries.count {
            if case .job(let job, _) = entries[head] { _ = job.join() }
            head += 1
        }
        entries.removeAll()
        head = 0
        jobsWaiting = 0
    }

    private func tellLimit() {
        let limit = slots.limit
        if limit < limitTold {
            limitTold = limit
            limitLowered(limit)
        }
    }

    private func deliverOldest() throws(QBError) {
        let entry = entries[head]
        entries[head] = .step({})
        head += 1
        if head == entries.count { entries.removeAll(keepingCapacity: true); head = 0 }
        switch entry {
        case .job(let job, let deliver):
            jobsWaiting -= 1
            // join() hands over the thread's only reference to the bytes,
            // so their memory can be reused after delivery.
            let bytes = try job.join().get()
            tellLimit()
            try deliver(consume bytes)
        case .step(let step):
            try step()
        }
    }
}
