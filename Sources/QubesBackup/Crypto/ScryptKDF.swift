internal import CScryptKDF
import Glibc

/// scrypt (RFC 7914) through Tarsnap's libscrypt-kdf, the code behind the
/// `scrypt` program: its SIMD core is about a quarter faster than OpenSSL's
/// portable one, and key derivation is what bounds a v4 restore. Callers
/// check N, r and p against `ScryptLimits` first; the library allocates
/// `ScryptHeader.memory` bytes and keeps no state between calls, so
/// derivations can run on several threads.
enum ScryptKDF {
    static func derive(passphrase: Secret, salt: [UInt8], logN: Int, r: Int, p: Int, length: Int) throws(QBError) -> Secret {
        var key = [UInt8](repeating: 0, count: length)
        let status = passphrase.bytes.withUnsafeBytes { pass in
            salt.withUnsafeBytes { s in
                key.withUnsafeMutableBytes { out in
                    crypto_scrypt(pass.baseAddress?.assumingMemoryBound(to: UInt8.self), pass.count,
                                  s.baseAddress?.assumingMemoryBound(to: UInt8.self), s.count,
                                  UInt64(1) << UInt64(logN), UInt32(r), UInt32(p),
                                  out.baseAddress?.assumingMemoryBound(to: UInt8.self), out.count)
                }
            }
        }
        let code = errno
        guard status == 0 else {
            // libscrypt-kdf fails with ENOMEM when its posix_memalign or
            // mmap is refused, EFBIG/EINVAL for parameters it rejects.
            if code == ENOMEM {
                throw QBError(.outOfMemory, "scrypt key derivation (logN \(logN), r \(r), p \(p)) could not allocate its memory")
            }
            throw QBError(.limitExceeded, "scrypt key derivation refused logN \(logN), r \(r), p \(p): \(String(cString: strerror(code)))")
        }
        return Secret(key)
    }
}
