import Dispatch

/// Runs CPU-bound jobs (key derivations, MACs) on other threads while their
/// results are used in submission order on the caller's thread — so a
/// backed-up file's plaintext is written in order while the next chunks
/// are already being derived and authenticated.
///
/// At most `parallelism` jobs run at once and at most `parallelism + 1` wait
/// for delivery, which bounds memory to that many chunks (plus what each job
/// allocates). Steps queued with `then` run after everything queued before
/// them was delivered.
public final class InOrderJobs {
    private enum Entry {
        case job(WorkerThread<[UInt8]>, deliver: (consuming [UInt8]) throws(QBError) -> Void)
        case step(() throws(QBError) -> Void)
    }

    public let parallelism: Int
    /// Lets `parallelism` jobs compute at once; the one job more that may be
    /// started waits here, its chunk already read.
    private let running: DispatchSemaphore
    private var entries: [Entry] = []
    private var head = 0
    private var jobsWaiting = 0

    public init(parallelism: Int) {
        self.parallelism = max(1, parallelism)
        running = DispatchSemaphore(value: self.parallelism)
    }

    /// Starts `work` on a thread of its own and queues `deliver` for its
    /// result; delivers older results first when too many are waiting. A
    /// thread per job costs microseconds against a chunk's milliseconds to
    /// seconds, and no job can then wait behind a blocked one.
    public func submit(_ work: @escaping @Sendable () throws(QBError) -> [UInt8],
                       deliver: @escaping (consuming [UInt8]) throws(QBError) -> Void) throws(QBError) {
        let running = self.running
        do throws(QBError) {
            let job = try WorkerThread { () throws(QBError) -> [UInt8] in
                running.wait()
                defer { running.signal() }
                return try work()
            }
            entries.append(.job(job, deliver: deliver))
            jobsWaiting += 1
            while jobsWaiting > parallelism { try deliverOldest() }
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
            try deliver(consume bytes)
        case .step(let step):
            try step()
        }
    }
}
