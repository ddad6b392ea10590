import QubesBackup

/// Buffers listing lines and writes them in large blocks.
public final class LineWriter {
    private let out: FileDescriptor
    private var pending: [UInt8] = []

    public init(_ out: FileDescriptor) { self.out = out }

    public func line(_ text: String) throws(QBError) {
        pending.append(contentsOf: text.utf8)
        pending.append(0x0A)
        if pending.count >= 1 << 16 { try flush() }
    }

    public func flush() throws(QBError) {
        if pending.isEmpty { return }
        let bytes = pending
        pending = []
        try out.write(bytes.span.bytes)
    }
}
