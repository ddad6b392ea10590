/// One stored region of a sparse file: `length` bytes of data at logical
/// `offset`. Everything between regions is a hole.
public struct SparseRegion: Sendable, Equatable {
    public var offset: Int64
    public var length: Int64
    public init(offset: Int64, length: Int64) { self.offset = offset; self.length = length }
}

/// A validated sparse map, whatever encoding it came from (old GNU `S`,
/// PAX 0.0, 0.1 or 1.0): regions sorted, non-overlapping, inside the
/// logical size, their lengths summing to the stored data size. Zero-length
/// entries (GNU tar and Qubes end the map with one at `realSize`) are
/// checked and then dropped.
public struct SparseMap: Sendable, Equatable {
    public let regions: [SparseRegion]
    /// The logical file size; the file ends in a hole when the last region
    /// stops short of it.
    public let realSize: Int64
    /// Σ region lengths: how many data bytes the archive stores.
    public let storedSize: Int64

    /// Validates `entries` against the logical size and the stored data size.
    public init(entries: [SparseRegion], realSize: Int64, storedSize: Int64) throws(QBError) {
        guard realSize >= 0, storedSize >= 0 else { throw Self.bad("negative sparse file size") }
        var kept: [SparseRegion] = []
        kept.reserveCapacity(entries.count)
        var position: Int64 = 0
        var total: Int64 = 0
        for entry in entries {
            guard entry.offset >= 0, entry.length >= 0 else { throw Self.bad("negative sparse map entry") }
            guard entry.offset >= position else { throw Self.bad("sparse map entries overlap or are out of order") }
            guard entry.offset <= realSize, entry.length <= realSize - entry.offset else {
                throw Self.bad("sparse map entry beyond the end of the file")
            }
            position = entry.offset + entry.length
            total += entry.length
            if entry.length > 0 { kept.append(entry) }
        }
        guard total == storedSize else {
            throw Self.bad("sparse map describes \(total) bytes but the archive stores \(storedSize)")
        }
        regions = kept
        self.realSize = realSize
        self.storedSize = storedSize
    }

    /// The holes: the complement of the regions within `realSize`.
    public var holes: [SparseRegion] {
        var result: [SparseRegion] = []
        var position: Int64 = 0
        for r in regions {
            if r.offset > position { result.append(SparseRegion(offset: position, length: r.offset - position)) }
            position = r.offset + r.length
        }
        if realSize > position { result.append(SparseRegion(offset: position, length: realSize - position)) }
        return result
    }

    private static func bad(_ message: String) -> QBError {
        QBError(.malformed, message, hint: "corrupt or hostile archive")
    }
}
