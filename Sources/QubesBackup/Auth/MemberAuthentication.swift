/// How a member (or the header) was found authentic.
public enum AuthenticationMethod: Sendable, Equatable, CustomStringConvertible {
    /// v2/v3: an HMAC text file with this digest.
    case hmac(DigestAlgorithm)
    /// v4: a scrypt envelope.
    case scrypt

    public var description: String {
        switch self {
        case .hmac(let d): return "hmac-" + d.name
        case .scrypt: return "scrypt"
        }
    }
}

/// Verifies data against the text of its `.hmac` file (FORMAT.md §5.1).
public enum HMACVerifier {
    /// The digests to try for `expected`: the one asked for, or the header
    /// search order narrowed to the digests whose length matches — so a
    /// large file is read once, with normally one HMAC running.
    public static func candidates(for expected: DigestLine, requested: DigestAlgorithm?) -> [DigestAlgorithm] {
        if let requested { return [requested] }
        var list = DigestAlgorithm.headerSearchOrder.compactMap { DigestAlgorithm($0) }
            .filter { $0.size == expected.mac.count }
        // A labelled line names its digest: try it first, under the usual name.
        if let labelled = DigestAlgorithm(expected.label), labelled.size == expected.mac.count {
            let known = list.firstIndex { $0.label == labelled.label }
            let first = known.map { list.remove(at: $0) } ?? labelled
            list.insert(first, at: 0)
        }
        return list
    }

    /// Streams `source` through the candidate HMACs at once and returns the
    /// digest whose MAC matches. Mismatch is `.authentication`.
    public static func verify(source: ByteSource, expected: DigestLine, passphrase: Secret,
                              requested: DigestAlgorithm? = nil, subject: String) throws(QBError) -> DigestAlgorithm {
        try verify(expected: expected, passphrase: passphrase, requested: requested, subject: subject) { (sink) throws(QBError) in
            try pump(from: source, to: sink)
        }
    }

    /// The same for bytes already in memory (a chunk, a header), computed
    /// over their own storage.
    public static func verify(bytes: RawSpan, expected: DigestLine, passphrase: Secret,
                              requested: DigestAlgorithm? = nil, subject: String) throws(QBError) -> DigestAlgorithm {
        try verify(expected: expected, passphrase: passphrase, requested: requested, subject: subject) { (sink) throws(QBError) in
            try sink.write(bytes)
            try sink.finish()
        }
    }

    private static func verify(expected: DigestLine, passphrase: Secret, requested: DigestAlgorithm?, subject: String,
                               feed: (ByteSink) throws(QBError) -> Void) throws(QBError) -> DigestAlgorithm {
        let algorithms = candidates(for: expected, requested: requested)
        guard !algorithms.isEmpty else {
            throw QBError(.authentication, "hmac does not match", subject: subject,
                          hint: "no known digest is \(expected.mac.count) bytes long; tampered backup")
        }
        let contexts = try algorithms.map { (a) throws(QBError) in try HMACContext(algorithm: a, key: passphrase) }
        try feed(FanOut(contexts))
        for context in contexts where constantTimeEqual(try context.mac(), expected.mac) {
            return context.algorithm
        }
        throw QBError(.authentication, "hmac does not match", subject: subject, hint: QBError.wrongPassphraseOrTampered)
    }
}

/// Writes the same bytes to several sinks.
public final class FanOut: ByteSink {
    private let sinks: [ByteSink]
    public init(_ sinks: [ByteSink]) { self.sinks = sinks }
    public func write(_ bytes: RawSpan) throws(QBError) { for s in sinks { try s.write(bytes) } }
    public func finish() throws(QBError) { for s in sinks { try s.finish() } }
}
