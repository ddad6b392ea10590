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
    private final class Job: @unchecked Sendable {
        // @unchecked: `result` is written once by the worker before `done`
        // is signalled and read only after waiting on it.
        let done = DispatchSemaphore(value: 0)
        var result: Result<[UInt8], QBError> = .failure(QBError(.internalError, "job did not run"))
        private var work: (@Sendable () throws(QBError) -> [UInt8])?

        init(_ work: @escaping @Sendable () throws(QBError) -> [UInt8]) { self.work = work }

        /// Drops the work, and what it captured, before the result is handed
        /// over: a chunk's bytes are then referenced once, and their memory
        /// can be reused after delivery.
        func run() {
            guard let work else { return }
            self.work = nil
            result = Result { () throws(QBError) -> [UInt8] in try work() }
        }
    }

    private enum Entry {
        case job(Job, deliver: (consuming [UInt8]) throws(QBError) -> Void)
        case step(() throws(QBError) -> Void)
    }

    public let parallelism: Int
    private let running: DispatchSemaphore
    private var entries: [Entry] = []
    private var head = 0
    private var jobsWaiting = 0

    public init(parallelism: Int) {
        self.parallelism = max(1, parallelism)
        running = DispatchSemaphore(value: self.parallelism)
    }

    /// Starts `work` and queues `deliver` for its result; delivers older
    /// results first when too many are waiting.
    public func submit(_ work: @escaping @Sendable () throws(QBError) -> [UInt8],
                       deliver: @escaping (consuming [UInt8]) throws(QBError) -> Void) throws(QBError) {
        let job = Job(work)
        let running = self.running
        DispatchQueue.global().async {
            running.wait()
            job.run()
            running.signal()
            job.done.signal()
        }
        entries.append(.job(job, deliver: deliver))
        jobsWaiting += 1
        do throws(QBError) {
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
            if case .job(let job, _) = entries[head] { job.done.wait() }
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
            job.done.wait()
            jobsWaiting -= 1
            let bytes = try job.result.get()
            job.result = .success([])
            try deliver(consume bytes)
        case .step(let step):
            try step()
        }
    }
}
