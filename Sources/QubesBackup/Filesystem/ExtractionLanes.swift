import Dispatch
import Synchronization

/// The files of an extraction written by worker threads while the walk
/// goes on. Writing is nearly all kernel time (creating files, copying
/// their data), which a second core halves; reading the filesystem stays
/// on the walking thread.
///
/// Each lane is a thread with its own extractor, copy buffer and bounded
/// queue. A file goes to the lane its inode number picks, so every name of
/// a hard-linked inode lands on the same lane after the first: the link is
/// made after the file it links to, as in one thread. Directories are made
/// by the walking thread before anything inside them is queued.
///
/// What a lane finds (a file written, a damaged or refused one, a warning,
/// the output failing) comes back as events that the walking thread hands
/// to its callbacks, so callers see one thread, as before.
final class ExtractionLanes: @unchecked Sendable {
    // @unchecked: the lanes' queues and the events are behind their locks;
    // a lane's extractor and buffer are used by its own thread only.

    struct Job: Sendable {
        let node: FileNode
        let entry: TarEntry
    }

    enum Event: Sendable {
        case written(FileNode, size: Int?, warnings: [String])
        case damaged(FileProblem)
        /// The output failed: nothing more can be written.
        case failed(QBError)
    }

    private final class Lane: @unchecked Sendable {
        let jobs = Mutex<[Job?]>([])
        let slots = DispatchSemaphore(value: 0)
        let items = DispatchSemaphore(value: 0)
        let extractor: TarExtractor
        let buffer: UnsafeMutableRawBufferPointer

        init(extractor: TarExtractor, capacity: Int) {
            self.extractor = extractor
            buffer = .allocate(byteCount: 1 << 20, alignment: 4096)
            // Raised from 0: libdispatch traps when a semaphore is freed
            // below the value it was made with (see ByteChannel).
            for _ in 0..<capacity { slots.signal() }
        }

        deinit { buffer.deallocate() }

        func put(_ job: Job?) {
            slots.wait()
            jobs.withLock { $0.append(job) }
            items.signal()
        }

        func take() -> Job? {
            items.wait()
            let job = jobs.withLock { $0.removeFirst() }
            slots.signal()
            return job
        }
    }

    private let filesystem: Ext4Filesystem
    private let lanes: [Lane]
    private var threads: [WorkerThread<Void>] = []
    private let events = Mutex<[Event]>([])
    private let stopped = Atomic<Bool>(false)

    /// `count` lanes, each with an extractor made by `makeExtractor`.
    init(filesystem: Ext4Filesystem, count: Int, makeExtractor: () throws(QBError) -> TarExtractor) throws(QBError) {
        self.filesystem = filesystem
        var lanes: [Lane] = []
        for _ in 0..<max(1, count) { lanes.append(Lane(extractor: try makeExtractor(), capacity: 256)) }
        self.lanes = lanes
        for lane in lanes {
            do {
                threads.append(try WorkerThread { [self] () throws(QBError) in run(lane) })
            } catch {
                finish()
                throw error
            }
        }
    }

    /// Queues `job` on its inode's lane; waits while that lane is full.
    func submit(_ job: Job) {
        lanes[Int(job.node.inode.number % UInt32(lanes.count))].put(job)
    }

    /// Events since the last call, in the order they happened.
    func takeEvents() -> [Event] {
        events.withLock { e in
            defer { e.removeAll() }
            return e
        }
    }

    /// Ends every lane after its queued jobs and waits for the threads.
    func finish() {
        for lane in lanes { lane.put(nil) }
        for thread in threads { _ = thread.join() }
        threads = []
    }

    /// Applies each lane's deferred work (none today: lanes make no
    /// directories) and reports whether the output failed.
    func finishExtractors() throws(QBError) {
        for lane in lanes { try lane.extractor.finish() }
    }

    private func post(_ event: Event) { events.withLock { $0.append(event) } }

    private func run(_ lane: Lane) {
        while let job = lane.take() {
            // After the output failed, the rest is only drained.
            if stopped.load(ordering: .relaxed) { continue }
            write(job, lane: lane)
        }
    }

    private func write(_ job: Job, lane: Lane) {
        let node = job.node, fs = filesystem, buffer = lane.buffer
        var sourceFailure: QBError?
        do throws(QBError) {
            let warnings = try lane.extractor.extract(job.entry, contents: { (fd: Int32, name: String) throws(QBError) in
                do throws(DataCopyError) {
                    try fs.copyContents(of: node.inode, to: fd, name: name, buffer: buffer)
                } catch {
                    switch error {
                    case .source(let e): sourceFailure = e; throw e
                    case .destination(let e): throw e
                    }
                }
            })
            post(.written(node, size: job.entry.kind == .regular ? Int(job.entry.size) : nil, warnings: warnings))
        } catch {
            // The image damaged under this file, or a refusal of this
            // file: report, go on. Only the output failing ends it.
            if let sourceFailure {
                post(.damaged(FileProblem(path: node.name, inode: node.inode.number, error: sourceFailure)))
            } else if FilesystemExport.isThisFilesProblem(error) {
                post(.damaged(FileProblem(path: node.name, inode: node.inode.number, error: error)))
            } else {
                stopped.store(true, ordering: .relaxed)
                post(.failed(error))
            }
        }
    }
}
