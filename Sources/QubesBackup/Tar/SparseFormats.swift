/// The encodings of a sparse map, each turned into the region list that
/// `SparseMap` then validates: old GNU (`S` headers and their extension
/// blocks), PAX 0.0 and 0.1 (`GNU.sparse.*` records) and PAX 1.0 (decimal
/// text at the start of the member's data). Each refuses more than
/// `maxEntries` regions before storing them. Where a map spans blocks the
/// caller supplies them through `nextBlock`, which throws if the input ends.
enum SparseFormats {
    /// Longest number of a PAX 1.0 sparse map, in digits: Int64 has 19, and
    /// GNU tar writes no leading zeros. With the entry limit this bounds the
    /// map's text to about 21 bytes per number.
    static let maxSparse10Digits = 20

    /// Old GNU: four entries in the header, then, while `isextended` is set,
    /// extension blocks of 21 entries each.
    static func oldGNUEntries(header: TarHeaderBlock, maxEntries: Int,
                              nextBlock: () throws(QBError) -> [UInt8]) throws(QBError) -> [SparseRegion] {
        var entries: [SparseRegion] = []
        try appendOldGNUEntries(header.gnuSparseEntries, count: TarHeaderBlock.Field.gnuSparseEntryCount,
                                maxEntries: maxEntries, to: &entries)
        var extended = header.gnuIsExtended
        // Empty extension blocks (first offset NUL) add no entry, so the
        // entry limit alone would not stop a chain of them, and the caller
        // keeps their raw blocks.
        let layout = TarHeaderBlock.GNUSparseExtension.self
        var extensionBlocks = 0
        while extended {
            extensionBlocks += 1
            guard extensionBlocks <= maxEntries / layout.entryCount + 1 else { throw limitExceeded(maxEntries) }
            let block = try nextBlock()
            try appendOldGNUEntries(block[layout.entries], count: layout.entryCount, maxEntries: maxEntries, to: &entries)
            extended = block[layout.isExtended] != 0
        }
        return entries
    }

    private static func appendOldGNUEntries(_ area: ArraySlice<UInt8>, count: Int, maxEntries: Int,
                                            to entries: inout [SparseRegion]) throws(QBError) {
        let entry = TarHeaderBlock.GNUSparseEntry.self
        var p = area.startIndex
        for _ in 0..<count {
            // An entry whose offset field starts with NUL ends the list (unused slots).
            if area[p] == 0 { break }
            let offset = try TarNumeric.parse(area[(p + entry.offset.lowerBound)..<(p + entry.offset.upperBound)], what: "sparse offset")
            let length = try TarNumeric.parse(area[(p + entry.length.lowerBound)..<(p + entry.length.upperBound)], what: "sparse length")
            guard entries.count < maxEntries else { throw limitExceeded(maxEntries) }
            entries.append(SparseRegion(offset: offset, length: length))
            p += entry.size
        }
    }

    /// PAX 0.0 (repeated GNU.sparse.offset / GNU.sparse.numbytes) and 0.1
    /// (GNU.sparse.map=offset,size,...), checked against
    /// GNU.sparse.numblocks when present.
    static func pax0xEntries(_ records: PAXRecords, maxEntries: Int) throws(QBError) -> [SparseRegion] {
        let bad = QBError(.malformed, "invalid PAX sparse map", hint: "corrupt or hostile archive")
        var entries: [SparseRegion] = []
        if let map = records["GNU.sparse.map"] {
            let parts = map.split(separator: 0x2C, omittingEmptySubsequences: false)
            if map.isEmpty { return [] }
            guard parts.count % 2 == 0 else { throw bad }
            guard parts.count / 2 <= maxEntries else { throw limitExceeded(maxEntries) }
            var i = 0
            while i < parts.count {
                guard let o = TarNumeric.decimal(parts[i]), let n = TarNumeric.decimal(parts[i + 1]) else { throw bad }
                entries.append(SparseRegion(offset: o, length: n))
                i += 2
            }
        } else {
            var pendingOffset: Int64?
            for (key, value) in records.records {
                if key == "GNU.sparse.offset" {
                    guard pendingOffset == nil, let o = TarNumeric.decimal(value[...]) else { throw bad }
                    pendingOffset = o
                } else if key == "GNU.sparse.numbytes" {
                    guard let o = pendingOffset, let n = TarNumeric.decimal(value[...]) else { throw bad }
                    guard entries.count < maxEntries else { throw limitExceeded(maxEntries) }
                    entries.append(SparseRegion(offset: o, length: n))
                    pendingOffset = nil
                }
            }
            guard pendingOffset == nil else { throw bad }
        }
        if let count = records["GNU.sparse.numblocks"] {
            guard TarNumeric.decimal(count[...]) == Int64(entries.count) else { throw bad }
        }
        return entries
    }

    /// PAX 1.0: the map is text at the start of the data area — the entry
    /// count, then offset and length of each, every number followed by LF —
    /// padded with NULs to a block boundary. Reads whole blocks, never more
    /// than `dataSize` bytes; returns the regions and how many bytes of the
    /// data area the map took.
    static func sparse10Entries(dataSize: Int64, maxEntries: Int,
                                nextBlock: () throws(QBError) -> [UInt8]) throws(QBError) -> (entries: [SparseRegion], mapSize: Int64) {
        var numbers: [Int64] = []
        var needed = -1
        var value: Int64 = 0
        var digits = 0
        var consumed: Int64 = 0
        let bad = QBError(.malformed, "invalid PAX sparse 1.0 map", hint: "corrupt or hostile archive")
        while needed < 0 || numbers.count < needed {
            guard consumed + Int64(TarHeaderBlock.size) <= dataSize else { throw bad }
            let block = try nextBlock()
            consumed += Int64(TarHeaderBlock.size)
            for byte in block {
                if needed >= 0 && numbers.count == needed { break }
                if byte == 0x0A {
                    guard digits > 0 else { throw bad }
                    if needed < 0 {
                        guard value <= Int64(maxEntries) else { throw limitExceeded(maxEntries) }
                        needed = 1 + 2 * Int(value)
                    }
                    numbers.append(value)
                    value = 0
                    digits = 0
                } else if byte >= 0x30 && byte <= 0x39 {
                    // Leading zeros do not overflow: without this bound a map
                    // of endless "000…" would be read (and kept) to the end of
                    // the member's data.
                    guard digits < maxSparse10Digits else {
                        throw QBError(.limitExceeded, "PAX sparse 1.0 map number longer than \(maxSparse10Digits) digits",
                                      hint: "corrupt or hostile archive")
                    }
                    let (m, o1) = value.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = m.addingReportingOverflow(Int64(byte - 0x30))
                    guard !o1, !o2 else { throw bad }
                    value = sum
                    digits += 1
                } else {
                    throw bad
                }
            }
        }
        var entries: [SparseRegion] = []
        entries.reserveCapacity(Int(numbers[0]))
        var i = 1
        while i < numbers.count {
            entries.append(SparseRegion(offset: numbers[i], length: numbers[i + 1]))
            i += 2
        }
        return (entries, consumed)
    }

    private static func limitExceeded(_ maxEntries: Int) -> QBError {
        QBError(.limitExceeded, "sparse map has more than \(maxEntries) entries", hint: "corrupt or hostile archive")
    }
}
