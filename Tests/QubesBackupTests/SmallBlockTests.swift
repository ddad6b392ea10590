import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// The block sizes of the stages are a matter of speed only: a restore or a
/// decryption with small blocks gives the same bytes as with the 1 MiB
/// default. (The fuzzing harness runs with small blocks.)
@Suite struct SmallBlockTests {
    @Test(arguments: [1, 15, 16, 17, 4096])
    func opensslEncInSmallSlicesGivesTheSameBytes(sliceSize: Int) throws {
        let plaintext = [UInt8]((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
        let encrypted = try run("openssl", ["enc", "-e", "-aes-256-cbc", "-md", "md5", "-pass", "pass:qubes"],
                                stdin: Data(plaintext))
        #expect(encrypted.status == 0, "\(encrypted.stderr)")
        for piece in [1 << 20, 7] {
            let sink = WriteSizeRecorder()
            let decryptor = try OpenSSLEncDecryptor(passphrase: Secret("qubes"), downstream: sink, sliceSize: sliceSize)
            try feed([UInt8](encrypted.stdout), to: decryptor, pieces: [piece])
            #expect(sink.bytes == plaintext, "slices of \(sliceSize), pieces of \(piece)")
            // A slice's plaintext may carry the block held back from the slice before.
            #expect(sink.largestWrite <= sliceSize + 16)
            #expect(sink.finished)
        }
    }

    @Test(arguments: ["v2-aes-gzip.qubes", "v3-aes-gzip.qubes", "v4-xz.qubes", "v4-bzip2.qubes"])
    func restoreWithSmallBlocksGivesTheSameFiles(file: String) throws {
        let fixture = try Manifest.entry(file)
        let passphrase = fixture["passphrase"] as! String
        let bytes = [UInt8](try Data(contentsOf: Repo.fixture(file)))
        let reference = try ScratchDirectory(), small = try ScratchDirectory()
        try TruncationSweepTests.restore(bytes, passphrase: passphrase, into: reference.url)
        var decompression = DecompressionOptions()
        decompression.blockSize = 1000
        try TruncationSweepTests.restore(bytes, passphrase: passphrase, into: small.url,
                                         options: RestoreOptions(parallelism: 2, decompression: decompression, blockSize: 4096))
        let problems = try Manifest.mismatches(fixture, under: small.url) { _, _, path in path }
        #expect(problems.isEmpty, "\(file): \(problems)")
        let restored = try TruncationSweepTests.snapshot(small.url)
        #expect(restored.count > 3)
        #expect(restored == (try TruncationSweepTests.snapshot(reference.url)))
    }
}
