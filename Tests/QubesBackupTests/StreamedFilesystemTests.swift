import Foundation
import Testing
import QBTestSupport
@testable import QubesBackup

/// The filesystem reader over an image that passes by (StreamedImage),
/// against the same reader over the image file: real images made by
/// Tests/Fixtures/ext/make-image.sh, streamed in order as a restore gives
/// them (data regions only: holes do not pass), as many passes as needed.
@Suite struct StreamedFilesystemTests {
    /// Streams `file`'s data regions, in order, into `image`: one pass.
    static func pass(_ file: ImageFile, into image: StreamedImage, piece: Int = 1 << 16) throws {
        image.beginPass()
        let fd = open(file.path, O_RDONLY)
        defer { close(fd) }
        var at: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: piece)
        while at < file.size {
            let data = lseek(fd, off_t(at), 3 /* SEEK_DATA */)
            if data < 0 { break }
            let hole = lseek(fd, data, 4 /* SEEK_HOLE */)
            var offset = Int64(data)
            while offset < Int64(hole) {
                let n = Int(min(Int64(piece), Int64(hole) - offset))
                let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, n, off_t(offset)) }
                #expect(got == n)
                let passed = buffer.withUnsafeBytes { raw in
                    Result { () throws(QBError) in try image.pass(offset, UnsafeRawBufferPointer(rebasing: raw[0..<n])) }
                }
                try passed.get()
                offset += Int64(n)
            }
            at = Int64(hole)
        }
        try image.endPass()
    }

    /// Every name, kind, size, link target and file checksum the walk gives.
    static func listing(_ fs: Ext4Filesystem) throws -> [String] {
        var lines: [String] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        try fs.walk(roots: [], visit: { (node: FileNode) throws(QBError) -> Bool in
            var line = "\(node.name) \(node.kind) \(node.inode.size) \(String(decoding: node.linkTarget, as: UTF8.self)) \(node.hardLinkTo.map { String(decoding: $0, as: UTF8.self) } ?? "")"
            if node.kind == .regular && node.hardLinkTo == nil {
                var sum: UInt64 = 0
                do throws(DataCopyError) {
                    try fs.readContents(of: node.inode, buffer: buffer) { (offset: Int64, bytes: UnsafeRawBufferPointer) throws(QBError) in
                        for (i, b) in bytes.enumerated() { sum = sum &* 31 &+ UInt64(b) &+ UInt64(offset) &+ UInt64(i) }
                    }
                } catch {
                    line += " unreadable"
                }
                line += " \(sum)"
            }
            lines.append(line)
            return true
        }, damaged: { lines.append("damaged \($0)") })
        return lines
    }

    /// mke2fs's ext4 layout (flex_bg: every inode table near the start,
    /// before the blocks they point at) is read in one pass; others may
    /// need a second one (a block map's children before their indirect
    /// block, a journal whose replay changes where things are), never many.
    static let onePass: Set<String> = ["ext4", "ext2", "ext4-1k", "ext4-inline", "ext4-htree", "dirty-journal", "journal-root",
                                       "gpt", "mbr", "ext4-bigalloc", "corrupt-inode", "cycle"]

    @Test(arguments: ["ext4", "ext2", "ext3", "ext4-1k", "ext4-64k", "ext4-inline", "ext4-htree", "ext4-meta-bg", "ext3-no-filetype",
                      "dirty-journal", "journal-root", "journal-resize", "gpt", "mbr", "ext4-bigalloc", "corrupt-inode", "cycle",
                      "dir-before-inode"])
    func streamedGivesWhatTheFileGives(kind: String) throws {
        let dir = try ScratchDirectory()
        let file = try ImageFile(path: try ExtImages.image(kind, in: dir).path)
        let direct = try Ext4Filesystem(window: FilesystemLocator.locate(in: file, table: PartitionTable.read(from: file), partition: nil).window)
        let expected = try Self.listing(direct)

        // A small memory budget: most kept blocks go to the spill file.
        let image = StreamedImage(path: "\(kind) (streamed)", size: file.size, memoryBudget: 256 << 10, spillDirectory: dir.url.path)
        let streamed = StreamedFilesystem(image: image, options: .init())
        var passes = 0
        repeat {
            try Self.pass(file, into: image)
            passes += 1
        } while !streamed.walkable(roots: []) && passes < 8
        #expect(passes == 1 || (!Self.onePass.contains(kind) && passes <= 3), "\(kind): \(passes) passes")
        #expect(image.keptBytes.spilled > 0)
        // The spill file is unlinked as it is made: nothing is left.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".qb-spill") })
        let fs = try streamed.open()
        // File data is not kept: the contents are compared through a pass
        // that keeps every page.
        image.want(0, count: Int(file.size))
        try Self.pass(file, into: image)
        #expect(try Self.listing(fs) == expected, "\(kind)")
    }
}
