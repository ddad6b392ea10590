/// The records of a PAX extended header (`x` or `g`), in order: each is
/// `LEN KEY=VALUE\n` where LEN, in decimal, counts the whole record.
/// Order matters for PAX sparse 0.0, whose offset/numbytes keys repeat.
public struct PAXRecords: Sendable {
    public private(set) var records: [(key: String, value: [UInt8])] = []

    public init() {}

    /// Parses a whole extended-header data area. Any malformed record
    /// (bad length, missing `=` or newline, empty key) is an error: a reader
    /// that skipped it could apply the wrong name or size.
    public init(parsing data: ArraySlice<UInt8>) throws(QBError) {
        var i = data.startIndex
        let end = data.endIndex
        while i < end {
            // GNU tar pads the data area with NULs after the last record.
            if data[i] == 0 {
                guard data[i...].allSatisfy({ $0 == 0 }) else { throw Self.bad("NUL inside extended header") }
                break
            }
            var j = i
            while j < end, data[j] != 0x20 { j += 1 }
            guard j < end, j > i, data[i] != 0x30, let length = TarNumeric.decimal(data[i..<j]) else {
                throw Self.bad("invalid record length in extended header")
            }
            guard length > Int64(j - i + 1), length <= Int64(end - i) else {
                throw Self.bad("record length out of range in extended header")
            }
            let recordEnd = i + Int(length)
            guard data[recordEnd - 1] == 0x0A else { throw Self.bad("extended header record does not end with a newline") }
            let body = data[(j + 1)..<(recordEnd - 1)]
            guard let eq = body.firstIndex(of: 0x3D), eq > body.startIndex else {
                throw Self.bad("extended header record has no key")
            }
            let key = String(decoding: body[body.startIndex..<eq], as: UTF8.self)
            records.append((key, Array(body[(eq + 1)...])))
            i = recordEnd
        }
    }

    /// The last value recorded for `key`.
    public subscript(key: String) -> [UInt8]? {
        records.last(where: { $0.key == key })?.value
    }

    mutating func merge(_ other: PAXRecords) { records.append(contentsOf: other.records) }

    /// Adds a record at the end (the writer's side).
    public mutating func append(_ key: String, _ value: [UInt8]) { records.append((key, value)) }

    public mutating func append(_ key: String, _ value: String) { records.append((key, Array(value.utf8))) }

    /// The data area of an extended header holding these records, in order,
    /// without padding: the inverse of `init(parsing:)`.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        for (key, value) in records {
            // LEN counts its own digits: take the length without them, add
            // their count, and add one more if that carried into a new digit.
            let body = key.utf8.count + value.count + 3  // space, '=', newline
            var length = body + String(body).utf8.count
            if String(length).utf8.count > String(body).utf8.count { length += 1 }
            out.append(contentsOf: String(length).utf8)
            out.append(0x20)
            out.append(contentsOf: key.utf8)
            out.append(0x3D)
            out.append(contentsOf: value)
            out.append(0x0A)
        }
        return out
    }

    var isEmpty: Bool { records.isEmpty }

    private static func bad(_ message: String) -> QBError {
        QBError(.malformed, message, hint: "corrupt or hostile archive")
    }
}
