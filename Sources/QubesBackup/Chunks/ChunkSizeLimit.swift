/// The largest chunk held in memory while it is authenticated, when the
/// caller sets no other: well above the 100 MiB chunks Qubes writes, and
/// small enough that a few chunks in flight fit a rescue machine's memory.
public enum ChunkSizeLimit {
    public static let defaultMaximum = 1 << 30
    /// The size of the chunks Qubes writes: what a job is reckoned to hold
    /// before the first chunk is seen (`JobPlan.memoryPerJob`).
    public static let qubesChunkSize = 100 << 20
}
