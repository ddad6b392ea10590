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
            #expect(error.message == ByteChannel.readerStopped.message)
        }
        channel = nil
    }
}
