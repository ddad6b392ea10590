/// The volumes of one archive, in order: a plain archive is one volume; a
/// GNU multi-volume archive (`tar -M`, Qubes v2, FORMAT §8.4) is several,
/// each later one starting with a continuation (`M`) header when a member's
/// data runs across the boundary. `TarReader` asks for the next volume
/// when the current one ends.
public protocol TarVolumeSequence: AnyObject {
    /// The next volume, or nil after the last one.
    func nextVolume() throws(QBError) -> ByteSource?
}

/// Volumes given up front, in order.
public final class TarVolumeList: TarVolumeSequence {
    private var remaining: ArraySlice<ByteSource>

    public init(_ volumes: [ByteSource]) { remaining = volumes[...] }

    public func nextVolume() throws(QBError) -> ByteSource? { remaining.popFirst() }
}

/// Volumes opened lazily by a closure (for example one file per volume), so
/// only one is open at a time.
public final class TarVolumeOpener: TarVolumeSequence {
    private let open: (Int) throws(QBError) -> ByteSource?
    private var index = 0

    /// `open(n)` returns volume `n` (0-based) or nil when there are no more.
    public init(_ open: @escaping (Int) throws(QBError) -> ByteSource?) { self.open = open }

    public func nextVolume() throws(QBError) -> ByteSource? {
        let v = try open(index)
        index += 1
        return v
    }
}
