#if canImport(Glibc)
import Glibc
#endif
import QubesBackup

/// Bytes, rate and time left of a long read, redrawn on one line of
/// standard error at most twice a second — only when standard error is a
/// terminal, so logs and pipelines never see it.
public final class ProgressMeter {
    private let total: Int64?
    private var done: Int64 = 0
    private let started: Double
    private var lastDrawn: Double = 0
    private var drawn = false
    public var label = ""

    /// nil when standard error is not a terminal.
    public init?(total: Int64?) {
        guard isatty(2) == 1 else { return nil }
        self.total = total
        started = Self.now()
    }

    public func advance(by count: Int) {
        done += Int64(count)
        let t = Self.now()
        if t - lastDrawn >= 0.5 { lastDrawn = t; draw(at: t) }
    }

    /// Clears the line.
    public func end() {
        if drawn { Diagnostics.printPartial("\r\u{1B}[K") }
    }

    private func draw(at t: Double) {
        let elapsed = max(t - started, 0.001)
        let rate = Double(done) / elapsed
        var text = Self.size(done)
        if let total, total > 0 {
            text += " of " + Self.size(total) + " (\(Int(Double(done) * 100 / Double(total)))%)"
        }
        text += ", " + Self.size(Int64(rate)) + "/s"
        if let total, rate > 0, total > done { text += ", " + Self.duration(Double(total - done) / rate) + " left" }
        if !label.isEmpty { text += "  " + label }
        Diagnostics.printPartial("\r\u{1B}[K" + text)
        drawn = true
    }

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes), unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(Int(value * 10) / 10) + "." + String(Int(value * 10) % 10) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// A byte source that reports what passes through it to a progress meter:
/// bytes skipped count as done as well as bytes read, so that a restore
/// of one VM from a file reaches 100 %.
public final class MeteredSource: ByteSource {
    private let source: ByteSource
    private let meter: ProgressMeter?
    public init(_ source: ByteSource, meter: ProgressMeter?) { self.source = source; self.meter = meter }
    public func read(into buffer: IOBuffer) throws(QBError) -> Int {
        let n = try source.read(into: buffer)
        meter?.advance(by: n)
        return n
    }
    public func read(into buffer: IOBuffer, atMost limit: Int) throws(QBError) -> Int {
        let n = try source.read(into: buffer, atMost: limit)
        meter?.advance(by: n)
        return n
    }
    public func skip(_ count: Int64) throws(QBError) -> Int64 {
        let n = try source.skip(count)
        meter?.advance(by: Int(n))
        return n
    }
}
