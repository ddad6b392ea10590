#if canImport(Glibc)
import Glibc
#endif
import QubesBackup

/// SIGINT, SIGTERM and SIGHUP still end a tool with that signal, but first
/// the temporary files it was writing (`.qb-tmp-*`, see InProgressFiles)
/// are removed, so an interrupted restore leaves only whole files behind.
/// The signals are blocked in every thread and taken by one thread with
/// sigwait(3): no code runs in a signal handler.
enum SignalCleanup {
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    static func set() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        return set
    }

    /// Call before any other thread starts, so that they all inherit the mask.
    static func install() {
        var blocked = set()
        guard pthread_sigmask(SIG_BLOCK, &blocked, nil) == 0 else { return }
        var thread = pthread_t()
        if pthread_create(&thread, nil, signalThread, nil) != 0 {
            pthread_sigmask(SIG_UNBLOCK, &blocked, nil)
            return
        }
        pthread_detach(thread)
    }
}

private func signalThread(_: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    var waited = SignalCleanup.set()
    var received: Int32 = 0
    while sigwait(&waited, &received) != 0 {}
    InProgressFiles.removeAll { _ in
        // Die of the signal itself, so the parent sees what stopped us.
        signal(received, SIG_DFL)
        var one = sigset_t()
        sigemptyset(&one)
        sigaddset(&one, received)
        pthread_sigmask(SIG_UNBLOCK, &one, nil)
        raise(received)
        _exit(128 + received)
    }
    return nil
}
