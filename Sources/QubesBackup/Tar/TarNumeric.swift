/// Numeric header fields: octal ASCII (GNU, ustar, v7) or GNU base-256, the
/// header checksum, and the decimal values of PAX records. Field offsets
/// are in `TarHeaderBlock`.
enum TarNumeric {
    /// Parses a numeric field. Octal digits may be surrounded by spaces and
    /// end with NUL or space; an all-blank field is 0. A first byte with bit
    /// 0x80 set means base-256 (GNU tar for values ≥ 8 GiB); a negative
    /// base-256 value (bit 0x40 also set) is refused, as is anything that
    /// does not fit in Int64.
    static func parse(_ field: ArraySlice<UInt8>, what: String) throws(QBError) -> Int64 {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                throw QBError(.malformed, "negative \(what) in header", hint: "corrupt or hostile archive")
            }
            var value = Int64(first & 0x3F)
            for byte in field.dropFirst() {
                guard value <= (Int64.max >> 8) else {
                    throw QBError(.malformed, "\(what) too large in header", hint: "corrupt or hostile archive")
                }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var i = field.startIndex
        while i < field.endIndex, field[i] == 0x20 { i += 1 }
        var value: Int64 = 0
        var digits = 0
        while i < field.endIndex, field[i] >= 0x30, field[i] <= 0x37 {
            guard value <= (Int64.max >> 3) else {
                throw QBError(.malformed, "\(what) too large in header", hint: "corrupt or hostile archive")
            }
            value = value << 3 | Int64(field[i] - 0x30)
            digits += 1
            i += 1
        }
        while i < field.endIndex {
            guard field[i] == 0 || field[i] == 0x20 else {
                throw QBError(.malformed, "invalid \(what) field in header", hint: "not a tar archive, or corrupt")
            }
            i += 1
        }
        return value
    }

    /// Whether the checksum field matches the block: GNU tar accepts both
    /// the unsigned and the signed byte sum (old Sun tars used signed chars).
    static func checksumMatches(_ block: [UInt8]) throws(QBError) -> Bool {
        let field = TarHeaderBlock.Field.checksum
        let stored = try parse(block[field], what: "checksum")
        var unsigned = 0
        var signed = 0
        block.withUnsafeBufferPointer { b in
            for i in 0..<TarHeaderBlock.size {
                let byte = field.contains(i) ? 0x20 : b[i]
                unsigned &+= Int(byte)
                signed &+= Int(Int8(bitPattern: byte))
            }
        }
        return Int64(unsigned) == stored || Int64(signed) == stored
    }

    /// Parses an unsigned decimal number made only of digits (PAX values,
    /// sparse maps), with overflow checks.
    static func decimal(_ bytes: ArraySlice<UInt8>) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= 19 else { return nil }
        var value: Int64 = 0
        for byte in bytes {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(byte - 0x30))
            if o1 || o2 { return nil }
            value = s
        }
        return value
    }

    /// Formats `value` as a header field of `width` bytes the way GNU tar
    /// and ustar writers do: zero-padded octal digits filling all but the
    /// last byte, then NUL. Nil when the value is negative or needs more
    /// digits (the writer then moves it to a PAX record).
    static func octal(_ value: Int64, width: Int) -> [UInt8]? {
        guard value >= 0 else { return nil }
        let digitCount = width - 1
        guard digitCount >= 1, digitCount >= 21 || value < (Int64(1) << (3 * digitCount)) else { return nil }
        var field = [UInt8](repeating: 0x30, count: width)
        field[digitCount] = 0
        var v = value
        var i = digitCount - 1
        while v > 0 {
            field[i] = 0x30 + UInt8(v & 7)
            v >>= 3
            i -= 1
        }
        return field
    }

    /// The unsigned byte sum of a header with its checksum field counted as
    /// spaces: the value a writer stores (readers also accept the signed sum).
    static func checksum(_ block: [UInt8]) -> Int {
        let field = TarHeaderBlock.Field.checksum
        var sum = 0
        block.withUnsafeBufferPointer { b in
            for i in 0..<TarHeaderBlock.size { sum &+= field.contains(i) ? 0x20 : Int(b[i]) }
        }
        return sum
    }

    /// A PAX record's decimal value; `key` names it in the error.
    static func paxNumber(_ v: [UInt8], key: String) throws(QBError) -> Int64 {
        guard let n = TarNumeric.decimal(v[...]) else {
            throw QBError(.malformed, "invalid \(key) in extended header", hint: "corrupt or hostile archive")
        }
        return n
    }

    /// PAX times are decimal seconds with an optional fraction (kept to
    /// nanoseconds; further digits dropped).
    static func paxTime(_ v: [UInt8]) throws(QBError) -> (Int64, Int) {
        let bad = QBError(.malformed, "invalid mtime in extended header", hint: "corrupt or hostile archive")
        var s = v[...]
        var negative = false
        if s.first == 0x2D { negative = true; s = s.dropFirst() }
        var nanoseconds = 0
        if let dot = s.firstIndex(of: 0x2E) {
            let fraction = s[(dot + 1)...]
            guard fraction.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw bad }
            var scale = 100_000_000
            for digit in fraction.prefix(9) {
                nanoseconds += Int(digit - 0x30) * scale
                scale /= 10
            }
            s = s[s.startIndex..<dot]
        }
        guard var seconds = TarNumeric.decimal(s) else { throw bad }
        if negative {
            seconds = -seconds
            if nanoseconds > 0 { seconds -= 1; nanoseconds = 1_000_000_000 - nanoseconds }
        }
        return (seconds, nanoseconds)
    }
}
