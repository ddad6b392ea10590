#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The temporary files (`.qb-tmp-*`) being written right now, so that a
/// tool stopped by a signal can remove them before it dies: TarExtractor
/// registers each as it creates it, until it renames or removes it; the
/// command-line layer's signal thread calls `removeAll` (FORMAT.md §8.3:
/// nothing half-written may be left, not even under a temporary name).
public enum InProgressFiles {
    private struct Registry {
        var next: UInt64 = 0
        var files: [UInt64: (directory: Int32, name: [CChar])] = [:]
    }
    private static let registry = Mutex(Registry())

    /// Creates `name` in `directory` with `open` (which returns a
    /// descriptor, or -1 with errno set) while the registry is locked, and
    /// registers it when that succeeded: a signal's `removeAll` then either
    /// runs before the file exists or finds it registered, never between.
    /// Returns the descriptor (or -1 and the errno) and the registration.
    static func create(directory: Int32, name: [CChar], _ open: () -> Int32) -> (fd: Int32, errno: Int32, token: UInt64?) {
        registry.withLock { r in
            let fd = open()
            guard fd >= 0 else { return (fd, errno, nil) }
            r.next += 1
            r.files[r.next] = (directory, name)
            return (fd, 0, r.next)
        }
    }

    static func remove(_ token: UInt64) {
        registry.withLock { _ = $0.files.removeValue(forKey: token) }
    }

    /// Unlinks every registered file, then runs `then` with the registry
    /// still locked, so that no file is registered, renamed into place or
    /// forgotten meanwhile; `then` is meant not to return (it ends the
    /// process). Returns how many files were removed if it does.
    @discardableResult
    public static func removeAll(then: (Int) -> Void = { _ in }) -> Int {
        registry.withLock { r in
            var removed = 0
            for (_, file) in r.files where unlinkat(file.directory, file.name, 0) == 0 { removed += 1 }
            r.files.removeAll()
            then(removed)
            return removed
        }
    }
}
