/// Fixed-width integers out of on-disk structures. ext2/3/4 and GPT/MBR are
/// little-endian; the jbd2 journal is big-endian. Every accessor checks its
/// range (a short structure traps in Swift, so callers size their reads first
/// and parse only what they read).
extension Array where Element == UInt8 {
    @inline(__always) func le16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    @inline(__always) func le32(_ at: Int) -> UInt32 {
        UInt32(self[at]) | UInt32(self[at + 1]) << 8 | UInt32(self[at + 2]) << 16 | UInt32(self[at + 3]) << 24
    }
    @inline(__always) func le64(_ at: Int) -> UInt64 { UInt64(le32(at)) | UInt64(le32(at + 4)) << 32 }
    @inline(__always) func be16(_ at: Int) -> UInt16 { UInt16(self[at]) << 8 | UInt16(self[at + 1]) }
    @inline(__always) func be32(_ at: Int) -> UInt32 {
        UInt32(self[at]) << 24 | UInt32(self[at + 1]) << 16 | UInt32(self[at + 2]) << 8 | UInt32(self[at + 3])
    }
    @inline(__always) func be64(_ at: Int) -> UInt64 { UInt64(be32(at)) << 32 | UInt64(be32(at + 4)) }

    /// Bytes up to the first NUL (or all of `range`), for fixed-size name fields.
    func cString(_ range: Range<Int>) -> [UInt8] {
        let slice = self[range]
        return Array(slice.prefix { $0 != 0 })
    }

    /// A copy with `range` set to zero: checksums are computed over a
    /// structure with its own checksum field zeroed or left out.
    func zeroing(_ range: Range<Int>) -> [UInt8] {
        var copy = self
        for i in range { copy[i] = 0 }
        return copy
    }
}

/// A 32-bit number as its four little-endian bytes, as checksums take the
/// inode and group numbers.
func littleEndianBytes(_ value: UInt32) -> [UInt8] {
    [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8),
     UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 24)]
}
