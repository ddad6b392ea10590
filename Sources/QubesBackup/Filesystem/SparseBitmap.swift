/// A set of block or inode numbers, one bit each, in 4 KiB pages allocated
/// when a number in their range is first inserted: memory follows what is
/// marked (about one bit per block of data read, as e2fsck's pass 1B
/// bitmaps), not the numbers a superblock claims.
struct SparseBitmap {
    private static let wordsPerPage = 512
    private static let numbersPerPage = UInt64(wordsPerPage * 64)
    private var pages: [UInt64: [UInt64]] = [:]

    /// Bytes held by the pages.
    var bytes: Int { pages.count * Self.wordsPerPage * 8 }

    func contains(_ number: UInt64) -> Bool {
        guard let page = pages[number / Self.numbersPerPage] else { return false }
        let bit = number % Self.numbersPerPage
        return page[Int(bit / 64)] & (1 << (bit % 64)) != 0
    }

    /// Inserts `number`; false when it was there already.
    mutating func insert(_ number: UInt64) -> Bool {
        insertAll(number, count: 1) == nil
    }

    /// Inserts the `count` numbers from `first` when none of them is there
    /// yet, and returns nil; otherwise inserts nothing and returns the
    /// first of them that is there.
    mutating func insertAll(_ first: UInt64, count: UInt64) -> UInt64? {
        if let marked = firstMarked(first, count: count) { return marked }
        mark(first, count: count)
        return nil
    }

    /// Calls `body` with each page-and-word piece of the range: the page
    /// number, the word's index in its page, and the mask of the range's
    /// bits in that word.
    private static func forEachWord(_ first: UInt64, count: UInt64, _ body: (UInt64, Int, UInt64) -> Bool) {
        var at = first
        let end = first + count
        while at < end {
            let bit = at % 64
            let n = min(64 - bit, end - at)
            let mask = n == 64 ? ~UInt64(0) : ((UInt64(1) << n) - 1) << bit
            let inPage = at % numbersPerPage
            if !body(at / numbersPerPage, Int(inPage / 64), mask) { return }
            at += n
        }
    }

    private func firstMarked(_ first: UInt64, count: UInt64) -> UInt64? {
        var found: UInt64?
        Self.forEachWord(first, count: count) { page, word, mask in
            guard let bits = pages[page]?[word], bits & mask != 0 else { return true }
            found = page * Self.numbersPerPage + UInt64(word * 64 + (bits & mask).trailingZeroBitCount)
            return false
        }
        return found
    }

    private mutating func mark(_ first: UInt64, count: UInt64) {
        Self.forEachWord(first, count: count) { page, word, mask in
            pages[page, default: [UInt64](repeating: 0, count: Self.wordsPerPage)][word] |= mask
            return true
        }
    }
}
