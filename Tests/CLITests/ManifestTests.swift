import Foundation
import Testing
import QBTestSupport

/// The fixtures' manifest feeds parameterized suites through
/// `Manifest.loaded`; a manifest that does not load must fail here rather
/// than leave those suites with no cases to run.
@Suite struct ManifestTests {
    @Test func manifestLoads() throws {
        let manifest = try Manifest.loaded.get()
        #expect(manifest.fixtures.count >= 29)
        #expect(manifest.fixtures.filter(\.valid).count >= 11)
    }
}
