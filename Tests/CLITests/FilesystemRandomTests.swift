import Foundation
import Testing
import QBTestSupport

/// Random images made by e2fsprogs (Tests/Fixtures/ext/fs-random.py),
/// checked against the tree they must hold and against e2fsck: fixed seeds
/// here, random ones in `make fs-soak`. Each seed below once found a defect
/// or covers a case the others do not.
@Suite struct FilesystemRandomTests {
    static let script = Repo.fixtures.appendingPathComponent("ext/fs-random.py")

    static let seeds: [(mode: String, seed: Int, covers: String)] = [
        ("journal", 60, "/ changed, htree, two revokes, an uncommitted transaction, 1 KiB blocks"),
        ("journal", 141, "superseded, revoked and uncommitted blocks, htree, ^64bit,^metadata_csum"),
        ("journal", 30, "the first inode-table block (inodes 1-16 with / and the journal's) changed, 4 KiB blocks"),
        ("journal", 65, "a grow: superblock and descriptors journaled, targets past the old end"),
        ("journal", 27, "a grow with 4 KiB blocks, checksum v3, a revoke, htree"),
        ("layout", 188, "bigalloc with 64 KiB clusters, ^filetype, extent tree of depth 2"),
        ("layout", 130, "meta_bg with sparse_super2, the last meta group one group long"),
        ("layout", 96, "s_first_meta_bg 1 after resize2fs, sparse_super2"),
        ("layout", 142, "^filetype with an htree directory, extent tree of depth 2"),
        ("layout", 175, "tune2fs -O ^filetype then e2fsck"),
        ("layout", 11, "64 KiB blocks, meta_bg, ^filetype"),
        ("layout", 131, "inline_data, htree, extent tree of depth 2"),
    ]

    @Test(arguments: seeds.map { "\($0.mode) \($0.seed)" })
    func seedPasses(_ seed: String) throws {
        let parts = seed.split(separator: " ").map(String.init)
        let r = try run("python3", [Self.script.path, parts[0], "--seed", parts[1],
                                    "--qb-fs", Repo.binaries.appendingPathComponent("qb-fs").path])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderr)")
        #expect(r.stdoutText.hasSuffix("\(parts[0]) seed \(parts[1]): OK\n"), "\(r.stdoutText)")
    }
}
