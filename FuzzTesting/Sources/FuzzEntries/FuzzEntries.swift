// The fuzzing entry points, one per attacker-facing parser of QubesBackup.
//
// This one file is compiled twice: into the FuzzTesting package's
// `FuzzEntries` library, which the libFuzzer executables call, and — through
// the link Tests/QubesBackupTests/FuzzEntries.swift — into the root
// package's tests, which replay saved inputs (FuzzRegressionTests) through
// exactly the code the fuzzers ran. It uses only the library's public API.
//
// A thrown QBError is an expected result (the input was refused), never a
// finding. Findings are traps, sanitizer reports, unbounded memory or time,
// and the invariants checked below with `fuzzInvariant`.

import Foundation
import Synchronization
import QubesBackup

/// What one input did: accepted, or refused with a QBError of this kind.
public enum FuzzOutcome: Equatable, Sendable, CustomStringConvertible {
    case accepted
    case refused(QBError.Kind)

    public var description: String {
        switch self {
        case .accepted: "accepted"
        case .refused(let kind): "refused(\(kind))"
        }
    }
}

public enum FuzzEntries {
    /// The passphrase of every fixture.
    public static let passphrase = "qubes"

    static func run(_ body: () throws(QBError) -> Void) -> FuzzOutcome {
        do throws(QBError) {
            try body()
            return .accepted
        } catch {
            return .refused(error.kind)
        }
    }

    /// A broken promise of the library that a QBError would not reveal:
    /// stops the process so libFuzzer records the input.
    static func fuzzInvariant(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("fuzz invariant: " + message()) }
    }

    /// Writes `bytes` to `sink` in pieces of `piece` bytes (streaming
    /// boundaries are where decoders go wrong), then finishes it.
    static func feed(_ bytes: [UInt8], to sink: ByteSink, piece: Int) throws(QBError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = Swift.min(Swift.max(piece, 1), rest.count)
            try sink.write(contentsOf: rest.prefix(n))
            rest = rest.dropFirst(n)
        }
        try sink.finish()
    }

    // MARK: - 1. backup-header and its authentication

    /// Input: the bytes of `backup-header`, a NUL, the bytes of
    /// `backup-header.hmac` (HMAC text or a v4 scrypt copy). Without a NUL
    /// the whole input is the header. The header is parsed whether or not it
    /// authenticates, as a tool reading a tampered backup would.
    /// Outcome: the parse's refusal, else the authentication's.
    public static func header(_ data: [UInt8]) -> FuzzOutcome {
        let split = data.firstIndex(of: 0) ?? data.count
        let headerBytes = Array(data[..<split])
        let macBytes = split < data.count ? Array(data[(split + 1)...]) : []
        var parsed: BackupHeader?
        let parse = run { () throws(QBError) in parsed = try BackupHeader(parsing: headerBytes) }
        if let parsed {
            fuzzInvariant([2, 3, 4].contains(parsed.version), "header version \(parsed.version) accepted")
            fuzzInvariant(parsed.compressed == (parsed.compressionFilter != nil), "compressed flag and filter disagree")
            _ = parsed.normalizedFields
            for key in BackupHeader.knownKeys { _ = parsed.value(of: key) }
            for method in [AuthenticationMethod.scrypt, .hmac(DigestAlgorithm("sha512")!), .hmac(DigestAlgorithm("md5")!)] {
                _ = run { () throws(QBError) in try HeaderAuthentication.checkConsistency(parsed, method: method) }
            }
        }
        guard !macBytes.isEmpty else { return parse }
        let authentication = run { () throws(QBError) in
            // The fuzz limits, not what the machine has available: a fuzzed
            // logN 22 would otherwise derive with 4 GiB on every input.
            let method = try HeaderAuthentication.verify(header: headerBytes, hmacFile: macBytes, passphrase: Secret(passphrase),
                                                         limits: fixtureScryptLimits)
            if let parsed { try HeaderAuthentication.checkConsistency(parsed, method: method) }
        }
        return parse == .accepted ? authentication : parse
    }

    // MARK: - 2. `.hmac` digest lines

    /// Input: the bytes of a `.hmac` file. A line that parses is formatted
    /// again and checked against a fixed body with the fixtures' passphrase.
    public static func digestLine(_ data: [UInt8]) -> FuzzOutcome {
        run { () throws(QBError) in
            let line = try DigestLine(parsing: data, subject: "fuzz.hmac")
            fuzzInvariant(!line.mac.isEmpty, "empty digest accepted")
            let candidates = HMACVerifier.candidates(for: line, requested: nil)
            for algorithm in candidates {
                fuzzInvariant(algorithm.size == line.mac.count, "candidate \(algorithm.name) has the wrong length")
                let text = DigestLine.format(mac: line.mac, algorithm: algorithm, fileName: line.name)
                let again = try DigestLine(parsing: Array(text.utf8))
                fuzzInvariant(again.mac == line.mac, "formatted digest line does not parse back")
            }
            _ = try HMACVerifier.verify(source: MemorySource(Array("qubes.xml.000".utf8)), expected: line,
                                        passphrase: Secret(passphrase), subject: "fuzz")
        }
    }

    // MARK: - 3. tar reader (PAX, GNU, sparse maps, multi-volume) and extractor

    /// Most logical bytes read per input: holes read as zeros, so a sparse
    /// member of 1 TiB would otherwise keep one input busy for hours.
    static let tarReadBudget = 1 << 18

    /// The reader for a tar input: a flags byte, a split byte, then the
    /// archive. Flags: bit 0 ignore zero blocks (the outer backup stream);
    /// bit 3 the default limits instead of small ones; bit 4 split the
    /// archive into two volumes after 512 × split-byte bytes (multi-volume
    /// continuation headers).
    static func tarReader(_ data: [UInt8]) -> TarReader {
        let flags = data[0]
        let archive = Array(data.dropFirst(2))
        var volumes: [ByteSource] = [MemorySource(archive)]
        if flags & 0x10 != 0 {
            let cut = Swift.min(Int(data[1]) * 512, archive.count)
            volumes = [MemorySource(Array(archive[..<cut])), MemorySource(Array(archive[cut...]))]
        }
        let limits = flags & 0x08 != 0 ? TarLimits.default
            : TarLimits(maxSpecialHeaderSize: 1 << 16, maxSparseEntries: 1024, maxNameLength: 4096,
                        maxMemberSize: 1 << 40, maxMetaMembers: 8)
        return TarReader(volumes: TarVolumeList(volumes), options: .init(ignoreZeros: flags & 0x01 != 0, limits: limits),
                         bufferSize: 4096)
    }

    /// Input: as `tarReader`. The archive is read twice, by logical bytes
    /// (holes read as zeros) and by stored fragments (holes skipped): both
    /// must agree on the outcome, the members, and the first
    /// `tarCompareBytes` logical bytes of each. Flags bit 1 is unused.
    public static func tar(_ data: [UInt8]) -> FuzzOutcome {
        guard data.count >= 2 else { return .accepted }
        let bytes = readTar(data, byFragments: false)
        let fragments = readTar(data, byFragments: true)
        fuzzInvariant((bytes.outcome == .accepted) == (fragments.outcome == .accepted),
                      "by bytes \(bytes.outcome), by fragments \(fragments.outcome)")
        if bytes.outcome == .accepted {
            fuzzInvariant(bytes.members.count == fragments.members.count, "the two reads see different members")
            for (b, f) in zip(bytes.members, fragments.members) {
                fuzzInvariant(b.name == f.name, "member \(b.name) read by fragments as \(f.name)")
                let n = Swift.min(b.start.count, f.start.count)
                fuzzInvariant(b.start.prefix(n) == f.start.prefix(n), "\(b.name): bytes and fragments differ")
            }
        }
        return bytes.outcome
    }

    /// Most logical bytes of each member kept for `tar`'s comparison.
    static let tarCompareBytes = 1 << 16

    /// Reads every member through (within `tarReadBudget`), keeping each
    /// one's name and first logical bytes.
    static func readTar(_ data: [UInt8], byFragments: Bool) -> (outcome: FuzzOutcome, members: [(name: String, start: [UInt8])]) {
        let reader = tarReader(data)
        let archive = data.dropFirst(2)
        var members: [(name: String, start: [UInt8])] = []
        let outcome = run { () throws(QBError) in
            let buffer = IOBuffer(capacity: 4096)
            var budget = tarReadBudget
            while let entry = try reader.next() {
                fuzzInvariant(members.count < archive.count / 512, "more members than header blocks")
                fuzzInvariant(entry.size >= 0 && entry.storedSize >= 0 && entry.storedSize <= entry.size, "member sizes out of range")
                if let map = entry.sparseMap {
                    fuzzInvariant(map.realSize == entry.size && map.storedSize == entry.storedSize, "sparse map disagrees with the entry")
                    _ = map.holes
                }
                _ = try? MemberPath(entry.path)
                var start: [UInt8] = []
                if byFragments {
                    var end: Int64 = 0
                    while budget > 0, try reader.readFragment({ (offset, bytes) throws(QBError) in
                        fuzzInvariant(offset >= end, "fragments out of order")
                        // Below the kept length every byte was kept, so the hole starts at `start.count`.
                        if start.count < tarCompareBytes {
                            start += repeatElement(0, count: Int(Swift.min(offset, Int64(tarCompareBytes))) - start.count)
                            bytes.withUnsafeBytes { start += $0.prefix(tarCompareBytes - start.count) }
                        }
                        end = offset + Int64(bytes.byteCount)
                        fuzzInvariant(end <= entry.size, "fragment beyond the member's size")
                        budget -= bytes.byteCount
                    }) {}
                    // Trailing holes: zeros up to the member's size.
                    if budget > 0, start.count < tarCompareBytes {
                        start += repeatElement(0, count: Int(Swift.min(entry.size, Int64(tarCompareBytes))) - start.count)
                    }
                } else {
                    var total: Int64 = 0
                    while budget > 0 {
                        buffer.clear()
                        let n = try reader.read(into: buffer)
                        if n == 0 {
                            fuzzInvariant(total == entry.size, "member read as \(total) bytes, size \(entry.size)")
                            break
                        }
                        if start.count < tarCompareBytes {
                            buffer.withReadable { (bytes) in bytes.withUnsafeBytes { start += $0.prefix(tarCompareBytes - start.count) } }
                        }
                        total += Int64(n)
                        budget -= n
                    }
                }
                members.append((entry.name, start))
            }
        }
        return (outcome, members)
    }

    /// Buffer and block size of the harness's stages. The library's 1 MiB
    /// would make every execution map, touch and unmap fresh pages (under
    /// ASan, anything above 128 KiB is its own mapping, poisoned on free),
    /// and small blocks reach the block-boundary paths with small inputs.
    static let blockSize = 1 << 14

    /// A scratch path of its own for each call: the fuzzer calls one input
    /// at a time, but the regression tests replay inputs on parallel
    /// threads, and a shared path let one call delete another's files.
    static func scratchPath(_ what: String) -> String {
        let files = FileManager.default
        let shm = files.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let base = ProcessInfo.processInfo.environment["QB_FUZZ_SCRATCH"] ?? shm
        return base + "/qb-fuzz-\(what)-\(getpid())-\(scratchCounter.add(1, ordering: .relaxed).oldValue)"
    }
    static let scratchCounter = Atomic<Int>(0)

    /// Input: as `tarReader`. Extracts up to 64 members into a scratch
    /// directory (under $QB_FUZZ_SCRATCH, else /dev/shm or the temporary
    /// directory), then checks nothing appeared beside it.
    public static func tarExtract(_ data: [UInt8]) -> FuzzOutcome {
        guard data.count >= 2 else { return .accepted }
        let reader = tarReader(data)
        let files = FileManager.default
        let scratch = scratchPath("extract")
        let target = scratch + "/target"
        try? files.removeItem(atPath: scratch)
        try? files.createDirectory(atPath: target, withIntermediateDirectories: true)
        defer { try? files.removeItem(atPath: scratch) }
        return run { () throws(QBError) in
            let extractor = try TarExtractor(targetDirectory: target)
            var members = 0
            while let entry = try reader.next(), members < 64 {
                members += 1
                _ = try extractor.extract(entry, from: reader)
            }
            try extractor.finish()
            // Nothing may appear beside the target: everything stays inside it.
            let outside = (try? files.contentsOfDirectory(atPath: scratch)) ?? []
            fuzzInvariant(outside == ["target"], "extraction wrote outside its target: \(outside)")
        }
    }

    // MARK: - 4. openssl enc streams

    /// Input: a flags byte, then the stream. Bit 0: key derivation digest
    /// sha256 instead of md5; bit 1: aes-128-cbc instead of aes-256-cbc;
    /// bits 2–7: the stream is written in pieces of 1 + that many × 7 bytes.
    /// It is decrypted a second time, whole and in slices of 5 bytes (every
    /// slice's end inside a cipher block): both must agree.
    public static func opensslEnc(_ data: [UInt8]) -> FuzzOutcome {
        guard let flags = data.first else { return .accepted }
        let stream = Array(data.dropFirst())
        let first = decrypt(stream, flags: flags, piece: 1 + Int(flags >> 2) * 7, sliceSize: blockSize)
        let second = decrypt(stream, flags: flags, piece: Int.max, sliceSize: 5)
        fuzzInvariant(first.outcome == second.outcome, "\(first.outcome), but \(second.outcome) whole in slices of 5")
        fuzzInvariant(first.plaintext == second.plaintext, "different plaintext whole in slices of 5")
        return first.outcome
    }

    static func decrypt(_ stream: [UInt8], flags: UInt8, piece: Int, sliceSize: Int) -> (outcome: FuzzOutcome, plaintext: [UInt8]) {
        let sink = MemorySink(limit: 1 << 22)
        let outcome = run { () throws(QBError) in
            let decryptor = try OpenSSLEncDecryptor(cipher: flags & 0x02 == 0 ? "aes-256-cbc" : "aes-128-cbc",
                                                    digest: flags & 0x01 == 0 ? "md5" : "sha256",
                                                    passphrase: Secret(passphrase), downstream: sink, sliceSize: sliceSize)
            try feed(stream, to: decryptor, piece: piece)
            fuzzInvariant(sink.finished, "decryptor finished without finishing downstream")
            fuzzInvariant(sink.bytes.count <= Swift.max(0, stream.count - 16), "more plaintext than ciphertext")
        }
        return (outcome, sink.bytes)
    }

    // MARK: - 5. scrypt envelopes

    /// Cheap limits, so no input can make an execution expensive: about
    /// 132 KiB of scrypt memory, 128·r·(N + p + 2), and N·r·p up to 2048
    /// (logN 7 with r 8, or logN 10 with r 1, and p up to 2).
    public static let scryptLimits = ScryptLimits(maximumMemory: 128 * ((1 << 10) + 2 + 2), maximumWork: 2048)
    /// The seeds' own parameters, logN 10, r 8, p 1, and no more: for the
    /// entries that read whole backups.
    public static let fixtureScryptLimits = ScryptLimits(maximumMemory: 128 * 8 * ((1 << 10) + 1 + 2), maximumWork: 8192)
    /// The passphrase of the seeds: the v4 header copy's `backup-header!PASS`.
    public static let scryptPassphrase = "backup-header!qubes"

    /// Input: a flags byte, then the envelope. Bit 0 writes the correct
    /// header checksum (bytes 48–63, SHA-256 of bytes 0–47) before parsing,
    /// so the fuzzer reaches the parameter checks and the KDF instead of
    /// stopping at the checksum.
    public static func scryptFile(_ data: [UInt8]) -> FuzzOutcome {
        guard let flags = data.first else { return .accepted }
        var envelope = Array(data.dropFirst())
        if flags & 0x01 != 0, envelope.count >= 64 {
            envelope.replaceSubrange(48..<64, with: SHA256.hash(envelope[0..<48]).prefix(16))
        }
        return run { () throws(QBError) in
            let plaintext = try ScryptFile.decrypt(envelope, passphrase: Secret(scryptPassphrase), limits: scryptLimits,
                                                   subject: "fuzz")
            fuzzInvariant(plaintext.count == envelope.count - 128, "plaintext length is not envelope length − 128")
        }
    }

    // MARK: - 6. qubes.xml

    /// Input: the bytes of a `qubes.xml`.
    public static func qubesXML(_ data: [UInt8]) -> FuzzOutcome {
        run { () throws(QBError) in
            let vms = try QubesXML.parseVMs(data)
            for vm in vms where vm.included {
                fuzzInvariant(vm.subdir.map { $0.hasSuffix("/") } ?? true, "subdir without its slash")
            }
        }
    }

    // MARK: - 7. decompressors

    /// Input: a selector byte, then the compressed stream. Low 4 bits: the
    /// filter (0 = recognise by magic, then gzip, pigz, bzip2, pbzip2, xz,
    /// lzma, zstd, zstdmt, repeating); bit 4: zlib instead of ISA-L; bits
    /// 5–7: pieces of 1, 7, 64, 511, 4096, 65536 or all bytes at once.
    /// The memory limits are low (the seeds use the levels needing least):
    /// what a stream's header may ask for is allocated on every execution.
    /// Each stream is decoded a second time in other pieces and output
    /// blocks (of one byte when the output is small, so every member's end
    /// meets a block's end), and a gzip stream by the other inflater too:
    /// all must agree on whether it is whole and on every byte it holds.
    public static func decompress(_ data: [UInt8]) -> FuzzOutcome {
        guard let selector = data.first else { return .accepted }
        let filters: [CompressionFilter?] = [nil] + CompressionFilter.allCases
        let filter = filters[Int(selector & 0x0F) % filters.count]
        let inflater: Inflater = selector & 0x10 == 0 ? .isal : .zlib
        let stream = Array(data.dropFirst())
        let piece = [1, 7, 64, 511, 4096, 65536, Int.max, Int.max][Int(selector >> 5)]
        let (outcome, output, format) = decode(stream, filter: filter, inflater: inflater, piece: piece, blockSize: blockSize)
        func agree(_ other: (outcome: FuzzOutcome, output: [UInt8], format: CompressionFormat?), _ what: String) {
            fuzzInvariant((other.outcome == .accepted) == (outcome == .accepted), "\(outcome), but \(other.outcome) \(what)")
            fuzzInvariant(outcome != .accepted || other.output == output, "different bytes \(what)")
        }
        agree(decode(stream, filter: filter, inflater: inflater, piece: piece == Int.max ? 13 : Int.max,
                     blockSize: output.count < 1 << 16 ? 1 : 4093), "in other pieces and blocks")
        if format == .gzip {
            agree(decode(stream, filter: filter, inflater: inflater == .isal ? .zlib : .isal, piece: piece, blockSize: blockSize),
                  "with the other inflater")
        }
        return outcome
    }

    static func decode(_ stream: [UInt8], filter: CompressionFilter?, inflater: Inflater, piece: Int, blockSize: Int)
        -> (outcome: FuzzOutcome, output: [UInt8], format: CompressionFormat?) {
        var options = DecompressionOptions()
        options.inflater = inflater
        options.outputLimit = 1 << 22
        options.blockSize = blockSize
        options.lzmaMemoryLimit = 1 << 20
        options.zstdWindowLogMax = 20
        let sink = MemorySink()
        let decompressor = Decompressor(filter: filter, downstream: sink, options: options)
        let outcome = run { () throws(QBError) in
            try feed(stream, to: decompressor, piece: piece)
            fuzzInvariant(sink.finished, "decompressor finished without finishing downstream")
            fuzzInvariant(sink.bytes.count <= 1 << 22, "output over the limit")
        }
        return (outcome, sink.bytes, decompressor.format)
    }

    // MARK: - 8. chunk names and their order

    /// Input: a flags byte, then member names separated by LF. Bit 0: the v4
    /// layout (`.enc` members) instead of v2/v3 chunk + `.hmac` pairs; bit 1:
    /// a stream that starts at chunk 001 (one v2 volume checked alone).
    /// Every name that parses must spell itself back exactly.
    public static func chunkNames(_ data: [UInt8]) -> FuzzOutcome {
        guard let flags = data.first else { return .accepted }
        let names = data.dropFirst().split(separator: 0x0A, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        for name in names {
            _ = run { () throws(QBError) in
                let parsed = try ChunkName(parsing: name)
                fuzzInvariant(parsed.description == name, "'\(name)' parses as '\(parsed.description)'")
            }
        }
        var sequence = ChunkSequence(layout: flags & 0x01 == 0 ? .hmacPairs : .envelopes, firstIndex: flags & 0x02 == 0 ? 0 : 1)
        return run { () throws(QBError) in
            for name in names { _ = try sequence.accept(name) }
            try sequence.finish()
        }
    }

    // MARK: - 9. a whole backup through qb-restore's path

    /// Input: a whole backup file. Read with the fixtures' passphrase and
    /// cheap limits (the fixtures' scrypt parameters, logN 10, r 8, p 1,
    /// need 128·8·(1024 + 3) bytes), every
    /// file streamed through its stages and read through, nothing written.
    public static func restore(_ data: [UInt8]) -> FuzzOutcome {
        var decompression = DecompressionOptions()
        decompression.outputLimit = 1 << 24
        decompression.lzmaMemoryLimit = 64 << 20
        decompression.blockSize = blockSize
        let options = RestoreOptions(parallelism: 1, maximumChunkSize: 1 << 20,
                                     scryptLimits: fixtureScryptLimits,
                                     decompression: decompression, blockSize: blockSize)
        return run { () throws(QBError) in
            let files = try BackupRestore(source: MemorySource(data), passphrase: Secret(passphrase), options: options)
                .readHeader().readVMList()
            try files.process { (_: String) throws(QBError) -> BackupRestore.Route in
                .stream(InnerArchiveTarget(directory: nil, relocation: try MemberRelocation(within: nil, stripComponents: 0)))
            }
        }
    }

    // MARK: - 10. ext2/3/4 images (qb-fs)

    /// Most file bytes delivered per input: many names (or inodes) can map
    /// the same blocks, so one small image could otherwise make an
    /// execution read for a long time.
    static let filesystemReadBudget = 1 << 22
    /// Most files visited per input.
    static let filesystemVisitBudget = 1 << 14
    /// The refusal the harness throws out of the walk when a budget is spent.
    static let budgetSpent = QBError(.limitExceeded, "fuzz harness budget spent")

    /// Most zeros `writeFilesystemImage` inserts per run: 4 MiB.
    static let filesystemHoleLimit = 0x0FFF

    /// The disk image a filesystem input stands for. Input: a byte whose
    /// low 3 bits are a count N (bit 3 is `filesystem`'s); N runs of zeros, each 2 bytes of offset in
    /// KiB into the image as given and 2 bytes of length in KiB (both LE,
    /// the length's low 12 bits); then the image with those runs of zeros
    /// cut out. An ext3/4 journal is at least 1024 blocks, nearly all
    /// zeros, and a small filesystem's free space is zeros too: cut out, a
    /// seed with a journal stays small, and libFuzzer's mutations land on
    /// the bytes that matter. The zeros come back as holes in the scratch
    /// file (tmpfs stores nothing for them). Offsets are taken in order,
    /// each at least the one before; past the image's end, zeros are
    /// appended.
    static func writeFilesystemImage(_ data: [UInt8], to path: String) {
        let count = Int(data.first ?? 0) & 7
        let headerSize = 1 + 4 * count
        var holes: [(at: Int, length: Int)] = []
        if data.count >= headerSize {
            for i in 0..<count {
                let f = 1 + 4 * i
                let at = (Int(data[f]) | Int(data[f + 1]) << 8) << 10
                let length = ((Int(data[f + 2]) | Int(data[f + 3]) << 8) & filesystemHoleLimit) << 10
                holes.append((Swift.max(at, holes.last?.at ?? 0), length))
            }
        }
        let image = data.dropFirst(Swift.min(headerSize, data.count))
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("cannot write the scratch image \(path)") }
        defer { close(fd) }
        func put(_ bytes: ArraySlice<UInt8>, at offset: Int) {
            bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                    guard n > 0 else { fatalError("cannot write the scratch image \(path)") }
                    done += n
                }
            }
        }
        // Copy the image piece by piece, each hole shifting what follows.
        var from = 0, shift = 0
        for hole in holes {
            let to = Swift.min(hole.at, image.count)
            put(image.dropFirst(from).prefix(to - from), at: from + shift)
            from = to
            shift += hole.length
        }
        put(image.dropFirst(from), at: from + shift)
        guard ftruncate(fd, off_t(image.count + shift)) == 0 else { fatalError("cannot size the scratch image \(path)") }
    }

    /// Input: a disk image (a bare filesystem, or an MBR or GPT disk) as
    /// `writeFilesystemImage` reads it. It is written to a scratch file
    /// (ImageFile reads files), the filesystem located as qb-fs does,
    /// opened with journal replay and without checksum verification (so
    /// the fuzzer gets past checksums) unless bit 3 of the first byte asks
    /// for it (so the checks themselves are fuzzed), walked, and every
    /// regular file read through, every symbolic link's target and listing
    /// entry made, and the first few files looked up by their path. Damaged files are skipped, as qb-fs skips them.
    /// Invariants: each file's bytes come in increasing offsets and never
    /// past its size; no directory inode is visited twice.
    public static func filesystem(_ data: [UInt8]) -> FuzzOutcome {
        let files = FileManager.default
        let path = scratchPath("filesystem") + ".img"
        writeFilesystemImage(data, to: path)
        defer { try? files.removeItem(atPath: path) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        return run { () throws(QBError) in
            let image = try ImageFile(path: path)
            let table = try PartitionTable.read(from: image)
            let location = try FilesystemLocator.locate(in: image, table: table, partition: nil)
            let fs = try Ext4Filesystem(window: location.window,
                                        options: .init(verifyChecksums: (data.first ?? 0) & 0x08 != 0, replayJournal: true,
                                                       cacheBytes: 1 << 20, walkMemoryBytes: 16 << 20))
            _ = FilesystemSummary(fs).lines
            var directories = Set<UInt32>()
            var visits = 0
            var budget = filesystemReadBudget
            try fs.walk(roots: [], visit: { (node: FileNode) throws(QBError) -> Bool in
                visits += 1
                if visits > filesystemVisitBudget { throw budgetSpent }
                _ = node.listingEntry
                _ = node.tarEntry
                if visits <= 8 { _ = try? fs.lookup(node.name) }
                switch node.kind {
                case .directory:
                    fuzzInvariant(directories.insert(node.inode.number).inserted, "directory inode \(node.inode.number) visited twice")
                // A later name of a symbolic link is a hard link to the first: no target of its own.
                case .symbolicLink where node.hardLinkTo == nil:
                    fuzzInvariant(UInt64(node.linkTarget.count) == node.inode.size && !node.linkTarget.contains(0),
                                  "\(node.name): a \(node.linkTarget.count)-byte target for a \(node.inode.size)-byte symbolic link")
                case .regular where node.hardLinkTo == nil:
                    let size = Int64(clamping: node.inode.size)
                    var end: Int64 = 0
                    do throws(DataCopyError) {
                        try fs.readContents(of: node.inode, buffer: buffer) { (offset, bytes) throws(QBError) in
                            fuzzInvariant(offset >= end, "\(node.name): bytes at \(offset) after bytes up to \(end)")
                            end = offset + Int64(bytes.count)
                            fuzzInvariant(end <= size, "\(node.name): bytes up to \(end) of a \(size)-byte file")
                            budget -= bytes.count
                            if budget < 0 { throw budgetSpent }
                        }
                    } catch {
                        switch error {
                        // The harness's budget (the only error the body throws): end the walk.
                        case .destination: throw budgetSpent
                        // The image is damaged under this file: qb-fs reports it and goes on.
                        case .source: break
                        }
                    }
                default: break
                }
                return true
            }, damaged: { _ in })
            // Directories are entered once, and so visited at most once.
            fuzzInvariant(directories.count <= Int(fs.superblock.inodesCount), "more directories than inodes")
        }
    }
}

/// SHA-256 (FIPS 180-4), only to write a scrypt header's checksum into
/// fuzzer inputs; the library's own digests come from OpenSSL.
public enum SHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    public static func hash(_ message: ArraySlice<UInt8>) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var padded = Array(message)
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        let bits = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
        var w = [UInt32](repeating: 0, count: 64)
        for block in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                let b = block + 4 * i
                w[i] = UInt32(padded[b]) << 24 | UInt32(padded[b + 1]) << 16 | UInt32(padded[b + 2]) << 8 | UInt32(padded[b + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
        return h.flatMap { v in [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    }
}
