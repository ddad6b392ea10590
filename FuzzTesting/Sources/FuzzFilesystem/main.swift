import FuzzEntries

/// libFuzzer's entry point; the runtime linked by `--sanitize=fuzzer` provides main.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = FuzzEntries.filesystem(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
