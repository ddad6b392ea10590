import Foundation

/// The ext2/3/4 images of Tests/Fixtures/ext/make-image.sh, made from the
/// source tree of make-tree.sh: each kind made once and kept for every
/// later test and test run (make check, check-release and check-sanitize
/// each run the suites that read them), in process or through the tools.
public enum ExtImages {
    public static let scripts = Repo.fixtures.appendingPathComponent("ext")

    /// The source tree, built once per test process.
    static let source: ScratchDirectory = {
        let dir = try! ScratchDirectory()
        let made = try! run("/bin/bash", [scripts.appendingPathComponent("make-tree.sh").path, dir.file("src").path])
        precondition(made.status == 0, "make-tree.sh failed: \(made.stderr)")
        return dir
    }()
    public static var tree: URL { source.file("src") }

    /// Where images made once are kept: below the repository's .build, in a
    /// directory named by the scripts that make them and the e2fsprogs that
    /// ran them, so a change to either makes them anew. The images are
    /// deterministic (fixed UUIDs, hash seed and times), so a kept one is
    /// the one make-image.sh makes.
    static let cache: URL = {
        var key = Data()
        for script in ["make-image.sh", "make-tree.sh", "mke2fs.conf", "journal-diff.py"] {
            key += (try? Data(contentsOf: scripts.appendingPathComponent(script))) ?? Data()
        }
        key += (try? run("mke2fs", ["-V"]))?.stderr.data(using: .utf8) ?? Data()
        let dir = Repo.root.appendingPathComponent(".build/test-images/" + String(try! sha256(of: key).prefix(16)))
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }()

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A copy of image `kind` (and its `.expected`) in `dir`, made by
    /// make-image.sh the first time and copied from the cache after.
    public static func image(_ kind: String, in dir: ScratchDirectory) throws -> URL {
        let cached = cache.appendingPathComponent("\(kind).img")
        if !FileManager.default.fileExists(atPath: cached.path) {
            // Made aside and renamed into place whole: tests running at once
            // may make the same kind, and never see half an image.
            let work = try ScratchDirectory()
            let img = work.file("\(kind).img")
            let made = try run("/bin/bash", [scripts.appendingPathComponent("make-image.sh").path, kind, tree.path, img.path])
            guard made.status == 0 else { throw Failure(description: "make-image.sh \(kind): \(made.stderr)") }
            let placed = try shell("""
                set -e; tmp=$(mktemp -d '\(cache.path)/.making.XXXXXX')
                cp --sparse=always '\(img.path)' "$tmp/\(kind).img"
                if [ -e '\(img.path).expected' ]; then cp '\(img.path).expected' '\(cached.path).expected'; fi
                mv "$tmp/\(kind).img" '\(cached.path)'; rmdir "$tmp"
                """)
            guard placed.status == 0 else { throw Failure(description: "keeping \(kind).img: \(placed.stderr)") }
        }
        let img = dir.file("\(kind).img")
        let copied = try shell("""
            cp --sparse=always '\(cached.path)' '\(img.path)'
            if [ -e '\(cached.path).expected' ]; then cp '\(cached.path).expected' '\(img.path).expected'; fi
            """)
        guard copied.status == 0 else { throw Failure(description: "copying \(kind).img: \(copied.stderr)") }
        return img
    }
}
