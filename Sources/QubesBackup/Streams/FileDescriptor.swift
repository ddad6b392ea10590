// Linux only: the calls below name Glibc's open, read and write, which this type's own methods shadow.
import Glibc

/// Runs a system call, retrying on EINTR; a negative result becomes an
/// `.io(errno)` error naming the operation and the path.
@discardableResult
package func systemCall(_ operation: String, _ path: String? = nil, _ body: () -> Int) throws(QBError) -> Int {
    while true {
        let r = body()
        if r >= 0 { return r }
        let code = errno
        if code == EINTR { continue }
        throw QBError(.io(code), "\(operation): \(String(cString: strerror(code)))", subject: path)
    }
}

/// Writes all of `bytes` at `offset` of `fd` with pwrite(2), completing
/// short writes; a failure names `path`.
package func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, _ path: String) throws(QBError) {
    var done = 0
    while done < bytes.count {
        done += try systemCall("write error", path) {
            pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
        }
    }
}

/// A file descriptor used as a byte source and sink: `read(2)` and `write(2)`
/// in large blocks, short writes completed, EINTR retried. Closes the
/// descriptor on deinit when it owns it.
public final class FileDescriptor: ByteSource, ByteSink {
    public let rawValue: Int32
    /// Shown in error messages: a path, or `standard input`.
    public let name: String
    private let owned: Bool

    public init(rawValue: Int32, name: String, owned: Bool) {
        self.rawValue = rawValue
        self.name = name
        self.owned = owned
    }

    deinit { if owned { _ = close(rawValue) } }

    public static func standardInput() -> FileDescriptor { FileDescriptor(rawValue: 0, name: "standard input", owned: false) }
    public static func standardOutput() -> FileDescriptor { FileDescriptor(rawValue: 1, name: "standard output", owned: false) }

    /// Opens `path` for reading.
    public static func open(forReading path: String) throws(QBError) -> FileDescriptor {
        let fd = try systemCall("cannot open", path) { Int(Glibc.open(path, O_RDONLY | O_CLOEXEC)) }
        return FileDescriptor(rawValue: Int32(fd), name: path, owned: true)
    }

    /// `-` or nil is standard input, anything else a path.
    public static func input(_ path: String?) throws(QBError) -> FileDescriptor {
        guard let path, path != "-" else { return standardInput() }
        return try open(forReading: path)
    }

    public func read(into buffer: IOBuffer) throws(QBError) -> Int {
        try read(into: buffer, atMost: buffer.freeCapacity)
    }

    public func read(into buffer: IOBuffer, atMost limit: Int) throws(QBError) -> Int {
        let name = self.name, fd = rawValue
        return try buffer.fillFreeSpace { (space) throws(QBError) -> Int in
            try systemCall("read error", name) { Glibc.read(fd, space.baseAddress, Swift.min(space.count, limit)) }
        }
    }

    /// Moves to `offset` of a regular file (a later pass over a backup file).
    public func seek(to offset: Int64) throws(QBError) {
        guard regularFileSize != nil else {
            throw QBError(.unsupported, "cannot read this input again: it is not a regular file", subject: name,
                          hint: "give the backup as a file, not a pipe")
        }
        let fd = rawValue
        _ = try systemCall("seek error", name) { Int(lseek(fd, off_t(offset), SEEK_SET)) }
    }

    /// Seeks forward in a regular file, never past its current size:
    /// lseek(2) past the end succeeds silently, and the read that follows
    /// would then see an end where the file was merely short. Stopped at
    /// the size, the next read returns 0 and the reader says "truncated",
    /// as it does reading through. Pipes, terminals and devices (whose
    /// fstat size is not their length) are read through.
    public func skip(_ count: Int64) throws(QBError) -> Int64 {
        guard count > 0, let size = regularFileSize else { return 0 }
        let fd = rawValue
        let here = Int64(try systemCall("seek error", name) { Int(lseek(fd, 0, SEEK_CUR)) })
        let n = Swift.min(count, Swift.max(0, size - here))
        if n > 0 { try systemCall("seek error", name) { Int(lseek(fd, off_t(n), SEEK_CUR)) } }
        return n
    }

    public func write(_ bytes: RawSpan) throws(QBError) {
        let failure = bytes.withUnsafeBytes { writeAll($0) }
        if failure != 0 { throw QBError(.io(failure), "write error: \(String(cString: strerror(failure)))", subject: name) }
    }

    /// Writes bytes held in an array.
    public func write(_ bytes: ArraySlice<UInt8>) throws(QBError) {
        let failure = bytes.withUnsafeBytes { writeAll($0) }
        if failure != 0 { throw QBError(.io(failure), "write error: \(String(cString: strerror(failure)))", subject: name) }
    }

    /// Completes short writes and retries EINTR; returns 0 or the errno.
    private func writeAll(_ raw: UnsafeRawBufferPointer) -> Int32 {
        var done = 0
        while done < raw.count {
            let n = Glibc.write(rawValue, raw.baseAddress! + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }

    public func finish() throws(QBError) {}

    /// The size of a regular file; nil for pipes, terminals and devices.
    public var regularFileSize: Int64? {
        var info = stat()
        guard fstat(rawValue, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(info.st_size)
    }

    /// Whether the descriptor is a terminal.
    public var isTerminal: Bool { isatty(rawValue) == 1 }

    /// Grows a pipe's buffer (Linux `F_SETPIPE_SZ`) so stages of a shell
    /// pipeline hand over a megabyte per wake-up instead of 64 KiB. Not a
    /// pipe, or refused (above /proc/sys/fs/pipe-max-size): left as it is.
    public func widenPipe(to bytes: Int32 = 1 << 20) {
        #if os(Linux)
        var info = stat()
        guard fstat(rawValue, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO else { return }
        // F_LINUX_SPECIFIC_BASE + 7; Glibc's module does not export it.
        let setPipeSize: Int32 = 1031
        _ = fcntl(rawValue, setPipeSize, bytes)
        #endif
    }
}
