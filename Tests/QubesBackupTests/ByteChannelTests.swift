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

    /// OpenSSL refusing an operation is its own kind, not an I/O error
    /// without an errno, and carries OpenSSL's reason.
    @Test func openSSLFailuresAreCryptoLibraryErrors() {
        let error = QBError.openSSL("cannot initialise the cipher")
        #expect(error.kind == .cryptoLibrary)
        #expect(error.message.hasPrefix("cannot initialise the cipher"))
        #expect(QBError.openSSL(.unsupported, "digest x cannot be used for an HMAC").kind == .unsupported)
    }
}
