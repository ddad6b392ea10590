#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The temporary files (`.qb-tmp-*`) being written right now, so that a
/// tool stopped by a signal can remove them before it dies: TarExtractor
/// registers each between creating it and renaming or removing it; the
/// command-line layer's signal thread calls `removeAll` (FORMAT.md §8.3:
/// nothing half-written may be left, not even under a temporary name).
public enum InProgressFiles {
    private struct Registry {
        var next: UInt64 = 0
        var files: [UInt64: (directory: Int32, name: [CChar])] = [:]
    }
    private static let registry = Mutex(Registry())

    /// `name` in the open directory `directory`; the descriptor must stay
    /// open until `remove` is called.
    static func add(directory: Int32, name: [CChar]) -> UInt64 {
        registry.withLock { r in
            r.next += 1
            r.files[r.next] = (directory, name)
            return r.next
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
