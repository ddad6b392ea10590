/// A member name of the outer backup stream, `SUBDIR/FILE.NNN[.hmac|.enc]`
/// (FORMAT.md §3.3), validated before any part of it is used.
public struct ChunkName: Sendable, Equatable, CustomStringConvertible {
    public enum Suffix: String, Sendable { case none = "", hmac = ".hmac", enc = ".enc" }

    /// The backed-up file: `vm3/private.img`, `qubes.xml`, `vm9/.` (a whole directory).
    public let file: String
    public let index: Int
    public let suffix: Suffix

    /// `FILE.NNN`: the chunk's own name, which v4 binds into its passphrase.
    public var chunk: String { file + "." + Self.spell(index) }
    /// The member name as it stands in the stream.
    public var description: String { chunk + suffix.rawValue }

    /// C's `%03d`: `000`…`999`, then `1000`, `1001`, …
    public static func spell(_ index: Int) -> String {
        let digits = String(index)
        return digits.count >= 3 ? digits : String(repeating: "0", count: 3 - digits.count) + digits
    }

    public init(file: String, index: Int, suffix: Suffix) {
        self.file = file
        self.index = index
        self.suffix = suffix
    }

    /// Refuses anything a Qubes writer could not have produced: absolute or
    /// non-ASCII names, empty or `..` components, a missing or non-canonical
    /// chunk number.
    public init(parsing name: String) throws(QBError) {
        func bad(_ why: String) -> QBError { QBError(.malformed, "unexpected member name: \(why)", subject: printable(Array(name.utf8))) }
        guard !name.isEmpty, name.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else { throw bad("not printable ASCII") }
        var rest = Substring(name)
        var suffix = Suffix.none
        // One suffix at most: `X.000.enc.hmac` is no Qubes member (found by FuzzChunkNames).
        if let candidate = [Suffix.hmac, .enc].first(where: { rest.hasSuffix($0.rawValue) }) {
            suffix = candidate
            rest = rest.dropLast(candidate.rawValue.count)
        }
        guard let dot = rest.lastIndex(of: ".") else { throw bad("no chunk number") }
        let digits = rest[rest.index(after: dot)...]
        guard !digits.isEmpty, digits.count <= 9, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let index = Int(digits),
              Self.spell(index) == digits else {
            throw bad("chunk number is not in Qubes' %03d form")
        }
        let file = String(rest[..<dot])
        let components = file.split(separator: "/", omittingEmptySubsequences: false)
        guard !file.hasPrefix("/"), !components.contains(where: { $0.isEmpty || $0 == ".." }) else {
            throw bad("absolute path, empty or '..' component")
        }
        // `.` is a whole-directory member (`vm9/..000`), and only as the last component.
        guard !components.dropLast().contains("."), components.count > 1 || components[0] != "." else {
            throw bad("'.' component")
        }
        self.init(file: file, index: index, suffix: suffix)
    }
}

/// Enforces the order of the chunks in the outer stream (FORMAT.md §3.4): an
/// HMAC does not cover a chunk's name or position, so these checks are what
/// stop reordered, missing, repeated or spliced chunks in v2/v3.
public struct ChunkSequence: Sendable {
    public enum Layout: Sendable {
        /// v2/v3: `X.NNN` immediately followed by `X.NNN.hmac`.
        case hmacPairs
        /// v4: `X.NNN.enc` only.
        case envelopes
    }

    public let layout: Layout
    private var current: ChunkName?
    private var awaitingMAC: ChunkName?
    private var ended: Set<String> = []
    /// The index the first file starts at: 0, except when one v2 volume is
    /// checked alone.
    private var firstIndex: Int

    public init(layout: Layout, firstIndex: Int = 0) {
        self.layout = layout
        self.firstIndex = firstIndex
    }

    /// Takes the next member name of the stream; returns it parsed, or throws
    /// `.malformed` naming what was expected.
    public mutating func accept(_ name: String) throws(QBError) -> ChunkName {
        let chunk = try ChunkName(parsing: name)
        if let pending = awaitingMAC {
            guard chunk == ChunkName(file: pending.file, index: pending.index, suffix: .hmac) else {
                throw QBError(.malformed, "\(pending) is not followed by its .hmac (next member is \(name))", subject: pending.description,
                              hint: "missing, reordered or foreign member; tampered backup")
            }
            awaitingMAC = nil
            return chunk
        }
        let expectedSuffix: ChunkName.Suffix = layout == .hmacPairs ? .none : .enc
        guard chunk.suffix == expectedSuffix else {
            let what = chunk.suffix == .hmac ? "an .hmac without its chunk" : "a member of another backup format"
            throw QBError(.malformed, "unexpected \(name): \(what)", subject: name, hint: "tampered or damaged backup")
        }
        if let current, current.file == chunk.file {
            guard chunk.index == current.index + 1 else {
                let expected = ChunkName(file: chunk.file, index: current.index + 1, suffix: chunk.suffix)
                throw QBError(.malformed, "chunk out of order: expected \(expected), found \(name)", subject: chunk.file,
                              hint: "missing, repeated or reordered chunk; tampered backup")
            }
        } else {
            if let current { ended.insert(current.file) }
            guard !ended.contains(chunk.file) else {
                throw QBError(.malformed, "chunk of a file that already ended: \(name)", subject: chunk.file,
                              hint: "reordered or spliced chunks; tampered backup")
            }
            guard chunk.index == firstIndex else {
                throw QBError(.malformed, "file starts at chunk \(ChunkName.spell(chunk.index)), not \(ChunkName.spell(firstIndex)): \(name)",
                              subject: chunk.file, hint: "missing or reordered chunk; tampered backup")
            }
            firstIndex = 0
        }
        current = chunk
        if layout == .hmacPairs { awaitingMAC = chunk }
        return chunk
    }

    /// The stream ended: a chunk still waiting for its `.hmac` is an error.
    public func finish() throws(QBError) {
        if let pending = awaitingMAC {
            throw QBError(.truncated, "\(pending) has no .hmac: the stream ends after it", subject: pending.description)
        }
    }
}
