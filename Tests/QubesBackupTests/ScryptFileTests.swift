import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

@Suite struct ScryptFileTests {
    /// An envelope made by the real scrypt tool, cheap parameters.
    func envelope(_ plaintext: [UInt8], passphrase: String) throws -> [UInt8] {
        let dir = try ScratchDirectory()
        try Data(plaintext).write(to: dir.file("in"))
        let r = try shell("printf '%s\\n' \"$P\" | scrypt enc -P --logN 10 -r 8 -p 1 in out", environment: ["P": passphrase], directory: dir.url)
        #expect(r.status == 0, "\(r.stderr)")
        return [UInt8](try Data(contentsOf: dir.file("out")))
    }

    @Test func opensWhatScryptWrites() throws {
        for size in [0, 1, 15, 16, 17, 100_000] {
            let plain = (0..<size).map { _ in UInt8.random(in: 0...255) }
            let env = try envelope(plain, passphrase: "p@ss")
            #expect(try ScryptFile.decrypt(env, passphrase: Secret("p@ss")) == plain)
        }
    }

    @Test func everyFlippedByteIsRefused() throws {
        let env = try envelope(Array("the plaintext".utf8), passphrase: "k")
        for i in stride(from: 0, to: env.count, by: 7) {
            var bad = env
            bad[i] ^= 0x01
            #expect(throws: QBError.self, "byte \(i)") { try ScryptFile.decrypt(bad, passphrase: Secret("k")) }
        }
        #expect { try ScryptFile.decrypt(env, passphrase: Secret("K")) } throws: { ($0 as? QBError)?.kind == .authentication }
        #expect { try ScryptFile.decrypt(Array(env.dropLast()), passphrase: Secret("k")) } throws: { ($0 as? QBError)?.kind == .authentication }
        #expect { try ScryptFile.decrypt(Array(env.prefix(90)), passphrase: Secret("k")) } throws: { ($0 as? QBError)?.kind == .truncated }
    }

    /// Parameters are read before authentication: a hostile header with a
    /// correct checksum must be refused before the KDF allocates anything —
    /// here on a machine with 2 GiB available. The last case fits 128·r·N
    /// but not the p blocks the KDF also holds; the first and third ask for
    /// more work than the sanity limit.
    @Test(arguments: [(40, 8, 1), (22, 8, 1), (20, 8, 65), (21, 9, 1), (1, 1 << 18, 64)])
    func hostileParametersAreRefused(logN: Int, r: Int, p: Int) throws {
        let limits = ScryptLimits.affordable(SystemResources(cpus: 2, availableMemory: 2 << 30))
        var env = try envelope([1, 2, 3], passphrase: "k")
        env[7] = UInt8(logN)
        env.replaceSubrange(8..<12, with: withUnsafeBytes(of: UInt32(r).bigEndian, Array.init))
        env.replaceSubrange(12..<16, with: withUnsafeBytes(of: UInt32(p).bigEndian, Array.init))
        let sum = try run("sha256sum", [], stdin: Data(env[0..<48])).stdoutText.prefix(32)
        var checksum: [UInt8] = []
        var i = sum.startIndex
        while i < sum.endIndex { let j = sum.index(i, offsetBy: 2); checksum.append(UInt8(sum[i..<j], radix: 16)!); i = j }
        env.replaceSubrange(48..<64, with: checksum)
        #expect { try ScryptFile.decrypt(env, passphrase: Secret("k"), limits: limits) } throws: { ($0 as? QBError)?.kind == .limitExceeded }
    }
}
