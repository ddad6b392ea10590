/// The compression filters a backup header may name (`compression-filter`,
/// FORMAT.md §7.2): the allow-list. Qubes would run a program of that name;
/// qb never does (Qubes Security Bulletin 51, FORMAT.md §10) and decodes the
/// stream with a linked library instead. Any other name is refused.
public enum CompressionFilter: String, CaseIterable, Sendable {
    case gzip, pigz, bzip2, pbzip2, xz, lzma, zstd, zstdmt

    /// Validates a filter name exactly as written in a backup header or on a
    /// command line: one of the eight names, case-sensitive. Anything else —
    /// including a path, a program with options or a shell command — throws
    /// `.unsupported`, and nothing is ever executed.
    public init(headerName: String) throws(QBError) {
        guard let filter = CompressionFilter(rawValue: headerName) else {
            throw QBError(.unsupported, "compression filter '\(Self.printable(headerName))' is refused",
                          hint: "Qubes Security Bulletin 51: qb never runs a program named by a backup; allowed: \(Self.allowList)")
        }
        self = filter
    }

    /// The eight names, for messages and help texts.
    public static let allowList = allCases.map(\.rawValue).joined(separator: ", ")

    /// The stream format the named program writes.
    public var format: CompressionFormat {
        switch self {
        case .gzip, .pigz: .gzip
        case .bzip2, .pbzip2: .bzip2
        case .xz: .xz
        case .lzma: .lzma
        case .zstd, .zstdmt: .zstd
        }
    }

    /// A hostile name goes into a one-line message: keep it short and free of
    /// control characters so it cannot forge further lines on a terminal.
    private static func printable(_ name: String) -> String {
        var clean = String(name.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        if clean.count > 80 { clean = String(clean.prefix(80)) + "..." }
        return clean
    }
}

/// A compressed stream format (several filter names share one format).
public enum CompressionFormat: String, CaseIterable, Sendable {
    case gzip, bzip2, xz, lzma, zstd

    /// How a stream prefix relates to this format's magic bytes.
    enum MagicMatch: Equatable {
        /// The prefix cannot start a stream of this format.
        case mismatch
        /// Consistent so far; more bytes are needed to be sure.
        case partial
        /// The whole magic is present.
        case match
    }

    /// The byte patterns a stream of this format starts with (FORMAT.md §7.2),
    /// one range per byte. bzip2's fourth byte is the block-size digit; a zstd
    /// stream may also start with a skippable frame (magic 0x184D2A50 to
    /// 0x184D2A5F, little-endian). LZMA-alone has no magic.
    private var magics: [[ClosedRange<UInt8>]] {
        switch self {
        case .gzip: [[0x1F...0x1F, 0x8B...0x8B, 0x08...0x08]]
        case .bzip2: [[0x42...0x42, 0x5A...0x5A, 0x68...0x68, 0x31...0x39]]
        case .xz: [[0xFD...0xFD, 0x37...0x37, 0x7A...0x7A, 0x58...0x58, 0x5A...0x5A, 0x00...0x00]]
        case .lzma: []
        case .zstd: [[0x28...0x28, 0xB5...0xB5, 0x2F...0x2F, 0xFD...0xFD],
                     [0x50...0x5F, 0x2A...0x2A, 0x4D...0x4D, 0x18...0x18]]
        }
    }

    /// Bytes needed to recognise the format; 0 for LZMA-alone.
    var magicLength: Int { magics.map(\.count).max() ?? 0 }

    /// The most bytes any format needs to be recognised.
    static let longestMagic = allCases.map(\.magicLength).max() ?? 0

    /// Compares the first bytes of a stream (a prefix of any length) with this
    /// format's magic. LZMA-alone, having none, always matches.
    func matchMagic(_ prefix: UnsafeRawBufferPointer) -> MagicMatch {
        if self == .lzma { return .match }
        var result = MagicMatch.mismatch
        for magic in magics {
            let n = Swift.min(prefix.count, magic.count)
            guard (0..<n).allSatisfy({ magic[$0].contains(prefix[$0]) }) else { continue }
            if n == magic.count { return .match }
            result = .partial
        }
        return result
    }

    /// Recognises a stream by its magic bytes. `format` is nil when no format
    /// matches; `.lzma` is never detected (it has no magic). `complete` is
    /// false while more bytes could still change the answer.
    static func detect(_ prefix: UnsafeRawBufferPointer) -> (format: CompressionFormat?, complete: Bool) {
        var pending = false
        for format in allCases where format != .lzma {
            switch format.matchMagic(prefix) {
            case .match: return (format, true)
            case .partial: pending = true
            case .mismatch: break
            }
        }
        return (nil, !pending)
    }
}
