import Testing
@testable import QubesBackup

@Suite struct ByteChannelTests {
    /// A reader that stops early leaves written blocks queued; the writer is
    /// told, and dropping the channel then must not trap in libdispatch
    /// (qb-restore died of SIGILL, about one run in ten, when an inner
    /// archive was refused mid-file).
    @Test(arguments: 0...3)
    func droppedWithBlocksQueuedAfterTheReaderStopped(queued: Int) throws {
        var channel: ByteChannel? = ByteChannel(blocks: 4)
        let bytes: [UInt8] = [1, 2, 3]
        for _ in 0..<queued { try channel!.write(bytes.span.bytes) }
        channel!.stopReading()
        do {
            try channel!.write(bytes.span.bytes)
            Issue.record("a write after the reader stopped was accepted")
        } catch {
            #expect(error.kind == .cancelled)
        }
        channel = nil
    }

    /// Blocks handed over whole (a writer's block and a reader's buffer of
    /// the channel's size) and blocks copied (any other size) give the
    /// same bytes, volume by volume, whatever the mix.
    @Test(arguments: [(blockSize: 64, readerBuffer: 64), (64, 100), (64, 7), (4096, 4096)])
    func blocksExchangedOrCopiedGiveTheSameBytes(blockSize: Int, readerBuffer: Int) throws {
        var generator = SplitMix(seed: UInt64(blockSize * 1000 + readerBuffer))
        var volumes: [[UInt8]] = []
        var writes: [(bytes: [UInt8], asBlock: Bool)] = []
        var volumeOfWrite: [Int] = []
        for v in 0..<5 {
            var volume: [UInt8] = []
            for _ in 0..<Int(generator.next() % 20) {
                let count = Int(generator.next() % UInt64(blockSize * 3))
                let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                // Only a block of the channel's size can be queued whole.
                let asBlock = count <= blockSize && generator.next() % 2 == 0
                writes.append((bytes, asBlock))
                volumeOfWrite.append(v)
                volume += bytes
            }
            volumes.append(volume)
        }
        let channel = ByteChannel(blocks: 2, blockSize: blockSize)
        let reader = try WorkerThread { () throws(QBError) -> [[UInt8]] in
            var got: [[UInt8]] = []
            let buffer = IOBuffer(capacity: readerBuffer)
            let sequence = channel.volumes
            while let source = try sequence.nextVolume() {
                var volume: [UInt8] = []
                while true {
                    buffer.clear()
                    if try source.read(into: buffer) == 0 { break }
                    buffer.withReadable { volume.append(contentsOf: $0) }
                }
                got.append(volume)
            }
            return got
        }
        var written = 0
        for (i, write) in writes.enumerated() {
            while written < volumeOfWrite[i] { try channel.endVolume(); written += 1 }
            if write.asBlock {
                let block = IOBuffer(capacity: blockSize)
                block.append(write.bytes[...])
                try channel.write(block: block)
                #expect(block.isEmpty && block.capacity == blockSize)
            } else {
                try channel.write(write.bytes.span.bytes)
            }
        }
        while written < volumes.count - 1 { try channel.endVolume(); written += 1 }
        try channel.endVolume()
        try channel.finish()
        let got = try reader.join().get()
        #expect(got == volumes)
        #expect(volumes.joined().count > 10 * blockSize)
    }

    /// OpenSSL refusing an operation is its own kind, not an I/O error
    /// without an errno, and carries OpenSSL's reason.
    @Test func openSSLFailuresAreCryptoLibraryErrors() {
        let error = QBError.openSSL("cannot initialise the cipher")
        #expect(error.kind == .cryptoLibrary)
        #expect(error.message.hasPrefix("cannot initialise the cipher"))
        #expect(QBError.openSSL(.unsupported, "digest x cannot be used for an HMAC").kind == .unsupported)
    }
}

/// A small deterministic generator, so a failing case can be replayed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
