#if canImport(Glibc)
import Glibc
#endif
#if os(Linux)
internal import CLinux
#endif

/// The bytes of a volume image, by offset: a file opened for random access
/// (`ImageFile`), or an image passing by in a backup's stream, of which what
/// the reader needs is kept (`StreamedImage`). Partition tables, windows
/// and filesystems read images through this alone.
public protocol ImageBytes: AnyObject, Sendable {
    /// Shown in error messages.
    var path: String { get }
    /// Bytes in the image.
    var size: Int64 { get }
    /// Fills `buffer` with the bytes at `offset`; the whole range must lie
    /// inside the image.
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(QBError)
}

extension ImageBytes {
    /// The `count` bytes at `offset`.
    public func read(at offset: Int64, count: Int) throws(QBError) -> [UInt8] {
        guard count > 0 else { return [] }
        var failure: QBError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(QBError) {
                try read(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }
}

/// A volume image opened read-only for random access: the one place that
/// reads an image file. Reads go through `pread(2)`, never `mmap`, so an image
/// truncated while it is read gives an error, not SIGBUS; every range is
/// checked against the image's size before the call, and a short read is
/// `.truncated`, never zeros.
public final class ImageFile: ImageBytes, @unchecked Sendable {
    /// Shown in error messages.
    public let path: String
    /// Bytes in the file (or block device) when it was opened.
    public let size: Int64
    private let fd: Int32

    /// Opens a regular file or a block device. A pipe or a terminal is
    /// refused: a filesystem cannot be read as a stream.
    public init(path: String) throws(QBError) {
        let fd = Int32(try systemCall("cannot open", path) { Int(open(path, O_RDONLY | O_CLOEXEC)) })
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw QBError(.io(code), "cannot inspect: \(String(cString: strerror(code)))", subject: path)
        }
        let kind = info.st_mode & S_IFMT
        if kind == S_IFREG {
            size = Int64(info.st_size)
        } else if kind == S_IFBLK {
            size = Int64(lseek(fd, 0, SEEK_END))
        } else {
            close(fd)
            throw QBError(.usage, "not a regular file or block device", subject: path,
                          hint: "a filesystem needs random access: save the image to a file first")
        }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// The range `count` bytes from `offset` must lie inside the image.
    private func checkRange(_ offset: Int64, _ count: Int) throws(QBError) {
        guard offset >= 0, count >= 0, Int64(count) <= size, offset <= size - Int64(count) else {
            throw QBError(.truncated, "read of \(count) bytes at offset \(offset) is past the end of the image (\(size) bytes)", subject: path)
        }
    }

    /// Fills `buffer` with the bytes at `offset`; the whole range must lie
    /// inside the image.
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(QBError) {
        try checkRange(offset, buffer.count)
        var done = 0
        while done < buffer.count {
            let n = try systemCall("read error", path) {
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 {
                throw QBError(.truncated, "image ended at offset \(offset + Int64(done)) while reading", subject: path,
                              hint: "the file shrank while it was read")
            }
            done += n
        }
    }

    /// Copies `count` bytes at `offset` into the file `target` at
    /// `targetOffset`, inside the kernel where it can (copy_file_range(2)),
    /// otherwise through `buffer`. Failures say which side failed: a
    /// damaged image is salvage, a full disk is the end.
    public func copy(at offset: Int64, count: Int, to target: Int32, at targetOffset: Int64,
                     buffer: UnsafeMutableRawBufferPointer, targetName: String) throws(DataCopyError) {
        do { try checkRange(offset, count) } catch { throw .source(error) }
        var done = 0
        #if os(Linux)
        var inKernel = true
        while inKernel && done < count {
            var from = off_t(offset) + off_t(done), to = off_t(targetOffset) + off_t(done)
            let n = qb_copy_file_range(fd, &from, target, &to, count - done)
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            // EXDEV, EINVAL, ENOSYS, EOPNOTSUPP, EIO, or 0 at a shrunk end:
            // the loop below copies the rest and tells which side failed.
            inKernel = false
        }
        #endif
        while done < count {
            let piece = min(buffer.count, count - done)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<piece])
            do {
                try read(at: offset + Int64(done), into: slice)
            } catch {
                throw .source(error)
            }
            do {
                try writeAll(target, UnsafeRawBufferPointer(slice), at: targetOffset + Int64(done), targetName)
            } catch {
                throw .destination(error)
            }
            done += piece
        }
    }
}

/// A copy from an image that failed, and on which side.
public enum DataCopyError: Error {
    /// Reading the image failed: the file is damaged, the rest can go on.
    case source(QBError)
    /// Writing the output failed: nothing more can be written.
    case destination(QBError)
}

/// A byte range of an image that holds one filesystem: the whole file, or a
/// partition. Offsets given to it are relative to its start and checked
/// against its length, so a filesystem cannot read its neighbour.
public struct ImageWindow: Sendable {
    public let file: ImageBytes
    public let start: Int64
    public let length: Int64

    public init(file: ImageBytes, start: Int64 = 0, length: Int64? = nil) throws(QBError) {
        let length = length ?? (file.size - start)
        guard start >= 0, length >= 0, start <= file.size, length <= file.size - start else {
            throw QBError(.truncated, "the partition (\(length) bytes at offset \(start)) runs past the end of the image (\(file.size) bytes)",
                          subject: file.path)
        }
        self.file = file
        self.start = start
        self.length = length
    }

    private func check(_ offset: Int64, _ count: Int) throws(QBError) {
        guard offset >= 0, Int64(count) <= length, offset <= length - Int64(count) else {
            throw QBError(.truncated, "read of \(count) bytes at offset \(offset) is past the end of the filesystem's \(length) bytes",
                          subject: file.path)
        }
    }

    public func read(at offset: Int64, count: Int) throws(QBError) -> [UInt8] {
        try check(offset, count)
        return try file.read(at: start + offset, count: count)
    }

    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(QBError) {
        try check(offset, buffer.count)
        try file.read(at: start + offset, into: buffer)
    }

    public func copy(at offset: Int64, count: Int, to target: Int32, at targetOffset: Int64,
                     buffer: UnsafeMutableRawBufferPointer, targetName: String) throws(DataCopyError) {
        do { try check(offset, count) } catch { throw .source(error) }
        if let image = file as? ImageFile {
            return try image.copy(at: start + offset, count: count, to: target, at: targetOffset, buffer: buffer, targetName: targetName)
        }
        var done = 0
        while done < count {
            let piece = min(buffer.count, count - done)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<piece])
            do { try file.read(at: start + offset + Int64(done), into: slice) } catch { throw .source(error) }
            do {
                try writeAll(target, UnsafeRawBufferPointer(slice), at: targetOffset + Int64(done), targetName)
            } catch {
                throw .destination(error)
            }
            done += piece
        }
    }
}
