import Testing
@testable import QubesBackup

@Suite struct ChunkSequenceTests {
    @Test(arguments: [
        ("vm3/private.img.000.enc", "vm3/private.img", 0, ChunkName.Suffix.enc),
        ("qubes.xml.000.hmac", "qubes.xml", 0, .hmac),
        ("vm9/..012", "vm9/.", 12, .none),
        ("dom0-home/user.999", "dom0-home/user", 999, .none),
        ("vm3/private.img.1000.enc", "vm3/private.img", 1000, .enc),
    ])
    func parsesQubesNames(_ name: String, _ file: String, _ index: Int, _ suffix: ChunkName.Suffix) throws {
        let c = try ChunkName(parsing: name)
        #expect(c.file == file && c.index == index && c.suffix == suffix && c.description == name)
    }

    @Test(arguments: ["/vm3/private.img.000", "vm3/../x.000", "vm3//x.000", "vm3/x.00", "vm3/x.0000", "vm3/x.1", "vm3/x",
                      "vm3/x.abc", "vm3/./x.000", "..000", "vm3/x\u{e9}.000", "vm3/x 1.000", ""])
    func refusesOtherNames(_ name: String) {
        #expect { try ChunkName(parsing: name) } throws: { ($0 as? QBError)?.kind == .malformed }
    }

    /// Feeds names in order; nil = all accepted, else a fragment of the error.
    func feed(_ layout: ChunkSequence.Layout, _ names: [String]) -> String? {
        var sequence = ChunkSequence(layout: layout)
        do {
            for n in names { _ = try sequence.accept(n) }
            try sequence.finish()
            return nil
        } catch {
            return error.description
        }
    }

    @Test func v3PairsInOrder() {
        #expect(feed(.hmacPairs, ["qubes.xml.000", "qubes.xml.000.hmac", "vm3/private.img.000", "vm3/private.img.000.hmac",
                                  "vm3/private.img.001", "vm3/private.img.001.hmac", "vm3/firewall.xml.000", "vm3/firewall.xml.000.hmac"]) == nil)
    }

    @Test(arguments: [
        (["a.000", "a.000.hmac", "a.002", "a.002.hmac"], "expected a.001"),           // missing middle
        (["a.000", "a.000.hmac", "a.000", "a.000.hmac"], "expected a.001"),           // repeated
        (["a.001", "a.001.hmac"], "not 000"),                                         // missing first
        (["a.000", "a.001.hmac"], "not followed by its .hmac"),                       // wrong pair
        (["a.000", "b.000"], "not followed by its .hmac"),                            // missing .hmac
        (["a.000.hmac"], "an .hmac without its chunk"),                              // reversed
        (["a.000"], "has no .hmac"),                                                  // ends early
        (["a.000", "a.000.hmac", "b.000", "b.000.hmac", "a.001", "a.001.hmac"], "already ended"), // interleaved
        (["a.000.enc"], "another backup format"),
    ])
    func v3Refusals(_ names: [String], _ message: String) {
        let error = feed(.hmacPairs, names)
        #expect(error?.contains(message) == true, "\(names): \(error ?? "accepted")")
    }

    @Test func v4Envelopes() {
        #expect(feed(.envelopes, ["qubes.xml.000.enc", "vm3/private.img.000.enc", "vm3/private.img.001.enc"]) == nil)
        #expect(feed(.envelopes, ["vm3/private.img.000.enc", "vm3/private.img.002.enc"])?.contains("expected vm3/private.img.001.enc") == true)
        #expect(feed(.envelopes, ["vm3/private.img.000.enc", "vm3/private.img.000"])?.contains("another backup format") == true)
    }
}
