internal import CIsal

/// CRC-32C (Castagnoli), as ext4's metadata_csum and jbd2's checksums use
/// it: Linux's `crc32c(seed, data)`, the raw reflected CRC with no inversion
/// on the way in or out (the callers pass ~0 or a filesystem seed). ISA-L's
/// `crc32_iscsi` computes it with the machine's CRC32 instruction.
enum CRC32C {
    static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    static func update(_ crc: UInt32, _ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return qb_crc32c(crc, base, bytes.count)
    }
}

/// CRC-32 (IEEE, as zlib's `crc32`), for GPT headers and entry arrays.
enum CRC32 {
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return 0 }
            return qb_crc32_ieee(base, raw.count)
        }
    }
}
