/// A C decoder that decodes one member (gzip) or stream (bzip2, xz) at a time;
/// `MemberDecoder` strings the members together.
protocol MemberEngine: AnyObject {
    /// Readies the engine for a new member.
    func startMember() throws(QBError)
    /// Decodes from `input` into `output`. `memberEnded` is true once the
    /// member's trailer checked out and all of its output was produced; the
    /// input after it is not consumed.
    func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(QBError)
        -> (consumed: Int, produced: Int, memberEnded: Bool)
}

/// Decodes concatenated members until the input ends, as `gzip -d`,
/// `bzip2 -d` and `xz -d` do (pigz and pbzip2 write several; `cat a.gz b.gz`
/// is valid). Between members only the next member's magic may follow —
/// and for xz, stream padding: zero bytes in multiples of four (xz file
/// format §2.2). Anything else is trailing garbage, even zeros after gzip or
/// bzip2 (gzip merely warns about them, but nothing in a Qubes backup writes
/// them). The input must end exactly after a member (or xz padding).
final class MemberDecoder<Engine: MemberEngine>: ByteSink {
    private let format: CompressionFormat
    private let engine: Engine
    private let output: DecodedOutput
    private var inMember = false
    private var membersDone = 0
    /// The start of a member whose magic straddles two writes.
    private var probe: [UInt8] = []
    /// xz stream padding seen since the last stream.
    private var padding = 0

    init(format: CompressionFormat, engine: Engine, output: DecodedOutput) {
        self.format = format
        self.engine = engine
        self.output = output
    }

    func write(_ bytes: RawSpan) throws(QBError) {
        try bytes.withUnsafeBytes { (raw) throws(QBError) in try feed(raw) }
    }

    private func feed(_ raw: UnsafeRawBufferPointer) throws(QBError) {
        var input = raw
        while !input.isEmpty {
            if !inMember {
                if format == .xz && membersDone > 0 && probe.isEmpty {
                    input = skipPadding(input)
                    if input.isEmpty { return }
                    if padding % 4 != 0 { throw badPadding() }
                    padding = 0
                }
                if probe.isEmpty && input.count >= format.magicLength {
                    try checkMagic(input)
                    try beginMember()
                } else {
                    let take = Swift.min(input.count, format.magicLength - probe.count)
                    probe.append(contentsOf: input.prefix(take))
                    input = UnsafeRawBufferPointer(rebasing: input[take...])
                    try probe.withBytes { (p) throws(QBError) in try checkMagic(p) }
                    if probe.count < format.magicLength { return }
                    try beginMember()
                    let held = probe
                    probe = []
                    // A few magic bytes cannot hold a whole member.
                    let left = try held.withBytes { (p) throws(QBError) in try decodeMember(p).count }
                    if left != 0 || !inMember {
                        throw QBError(.malformed, "\(format.rawValue) member ends inside its own header")
                    }
                }
            }
            input = try decodeMember(input)
        }
    }

    /// Consumes the zero bytes at the start of `input`.
    private func skipPadding(_ input: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let zeros = input.firstIndex { $0 != 0 } ?? input.count
        padding += zeros
        return UnsafeRawBufferPointer(rebasing: input[zeros...])
    }

    private func badPadding() -> QBError {
        QBError(.malformed, "trailing garbage after xz stream",
                hint: "stream padding must be a multiple of four zero bytes; damaged or tampered input")
    }

    private func beginMember() throws(QBError) {
        try engine.startMember()
        inMember = true
    }

    /// The first member must carry the format's magic; a later one that does
    /// not is trailing garbage (FORMAT.md §7.4).
    private func checkMagic(_ prefix: UnsafeRawBufferPointer) throws(QBError) {
        guard format.matchMagic(prefix) == .mismatch else { return }
        if membersDone == 0 {
            throw QBError(.malformed, "not a \(format.rawValue) stream", hint: "wrong magic bytes")
        }
        throw QBError(.malformed, "trailing garbage after \(format.rawValue) stream",
                      hint: "bytes follow the last complete member; damaged or tampered input")
    }

    /// Decodes until the input is used up or the member ends; returns the
    /// input after the member's end.
    private func decodeMember(_ input: UnsafeRawBufferPointer) throws(QBError) -> UnsafeRawBufferPointer {
        var rest = input
        while true {
            var consumed = 0, ended = false
            let filledUp = try output.fill { (out) throws(QBError) -> Int in
                let r = try engine.decode(rest, into: out)
                consumed = r.consumed
                ended = r.memberEnded
                return r.produced
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
            if ended {
                inMember = false
                membersDone += 1
                return rest
            }
            // A full block may leave output inside the library: call again
            // even without input.
            if rest.isEmpty && !filledUp { return rest }
            if consumed == 0 && !filledUp {
                throw QBError(.malformed, "\(format.rawValue) decoder made no progress", hint: "damaged input")
            }
        }
    }

    func finish() throws(QBError) {
        if inMember || !probe.isEmpty {
            throw QBError(.truncated, "truncated \(format.rawValue) stream",
                          hint: "the input ends inside a member; a chunk or the end of the backup is missing")
        }
        if membersDone == 0 {
            throw QBError(.truncated, "truncated input: empty where a \(format.rawValue) stream was expected")
        }
        if padding % 4 != 0 { throw badPadding() }
        try output.downstream.finish()
    }
}
