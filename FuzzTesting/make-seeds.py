#!/usr/bin/env python3
"""Regenerates FuzzTesting/Seeds/<target>/ from Tests/Fixtures and small
archives made with the real programs (GNU tar, openssl, scrypt, gzip, bzip2,
xz, zstd). The seeds are committed; run this only to rebuild them:

    python3 FuzzTesting/make-seeds.py

Each seed is laid out as its target's entry point in
Sources/FuzzEntries/FuzzEntries.swift expects (flag bytes first).
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "Fixtures")
SEEDS = os.path.join(HERE, "Seeds")
PASS = "qubes"


def members(fixture):
    """name -> bytes of the outer stream's members (concatenated tar sessions)."""
    out = {}
    with tarfile.open(os.path.join(FIXTURES, fixture), ignore_zeros=True) as t:
        for m in t:
            if m.isfile():
                out[m.name] = t.extractfile(m).read()
    return out


def names(fixture):
    with tarfile.open(os.path.join(FIXTURES, fixture), ignore_zeros=True) as t:
        return [m.name for m in t]


def run(args, data=None, cwd=None):
    return subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, cwd=cwd).stdout


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    fixtures = ["v2-aes-gzip.qubes", "v3-aes-gzip.qubes", "v3-plain-uncompressed.qubes", "v3-duplicate-key.qubes",
                "v3-qsb51-args.qubes", "v3-qsb51-shell.qubes", "v4-gzip.qubes", "v4-qsb51-program.qubes"]
    loaded = {f: members(f) for f in fixtures}

    # 1. header: backup-header NUL backup-header.hmac
    for f, m in loaded.items():
        write("FuzzHeader", f.replace(".qubes", ""), m["backup-header"] + b"\0" + m["backup-header.hmac"])

    # 2. digest lines
    for f in ["v2-aes-gzip.qubes", "v3-aes-gzip.qubes", "v3-plain-uncompressed.qubes"]:
        write("FuzzDigestLine", f.replace(".qubes", ""), loaded[f]["backup-header.hmac"])
    write("FuzzDigestLine", "openssl3-named", b"HMAC-SHA2-512(qubes.xml.000)= " + b"ab" * 64 + b"\n")
    write("FuzzDigestLine", "sha256-label", b"SHA2-256(stdin)= " + b"0f" * 32 + b"\n")

    # 4. openssl enc, 5. scrypt, 6. qubes.xml, 7. decompressors
    plain = loaded["v3-plain-uncompressed.qubes"]
    xml_tar = plain["qubes.xml.000"]
    with tarfile.open(fileobj=io.BytesIO(xml_tar)) as t:
        xml = t.extractfile("qubes.xml").read()
    write("FuzzQubesXML", "core2-r3", xml)
    v4 = loaded["v4-gzip.qubes"]
    with tempfile.TemporaryDirectory() as tmp:
        hdr = dict(line.split("=", 1) for line in v4["backup-header"].decode().split())
        bid = hdr["backup-id"]
        enc = os.path.join(tmp, "x.enc")
        with open(enc, "wb") as fh:
            fh.write(v4["qubes.xml.000.enc"])
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as fh:
            fh.write(f"{bid}!qubes.xml.000!{PASS}\n")
        gz = run(["scrypt", "dec", "--passphrase", "file:" + pw, enc])
        inner = run(["gzip", "-dc"], gz)
        with tarfile.open(fileobj=io.BytesIO(inner)) as t:
            xml4 = t.extractfile("qubes.xml").read()
        write("FuzzQubesXML", "core3-r4", xml4)

        # scrypt: a cheap envelope (logN 10, r 1: 128 KiB) under the target's passphrase.
        with open(pw, "w") as fh:
            fh.write("backup-header!qubes\n")
        src = os.path.join(tmp, "src")
        with open(src, "wb") as fh:
            fh.write(v4["backup-header"])
        small = run(["scrypt", "enc", "--logN", "10", "-r", "1", "-p", "1", "--passphrase", "file:" + pw, src])
        write("FuzzScryptFile", "header-copy-logN10-r1", b"\0" + small)
        write("FuzzScryptFile", "header-copy-logN10-r1-fixup", b"\1" + small)
        write("FuzzScryptFile", "v4-header-hmac-logN10", b"\1" + v4["backup-header.hmac"])

        # openssl enc of a small text, md5 (Qubes) and sha256 key derivation.
        text = xml[:1500]
        for flag, md in [(0, "md5"), (1, "sha256")]:
            ct = run(["openssl", "enc", "-e", "-aes-256-cbc", "-md", md, "-pass", "pass:" + PASS], text)
            write("FuzzOpenSSLEnc", "aes256-" + md, bytes([flag | (9 << 2)]) + ct)
        ct = run(["openssl", "enc", "-e", "-aes-128-cbc", "-md", "md5", "-pass", "pass:" + PASS], text[:100])
        write("FuzzOpenSSLEnc", "aes128-md5", bytes([0x02]) + ct)
        write("FuzzOpenSSLEnc", "v3-qubes-xml-chunk", bytes([0xFC]) + loaded["v3-aes-gzip.qubes"]["qubes.xml.000"])

        # decompressors: selector (filter index; 0 = by magic), then the stream.
        data = xml[:3000] + b"\0" * 2000
        # The levels needing least decoder memory: the harness's limits are
        # low, so that an execution never allocates megabytes.
        codecs = [(1, ["gzip", "-c"]), (3, ["bzip2", "-1", "-c"]), (5, ["xz", "-0", "-c"]), (6, ["lzma", "-0", "-c"]),
                  (7, ["zstd", "-1", "-c", "-q"])]
        for index, argv in codecs:
            stream = run(argv, data)
            write("FuzzDecompress", argv[0], bytes([index | 0xC0]) + stream)
            write("FuzzDecompress", argv[0] + "-auto-small-pieces", bytes([0x20]) + stream)
        write("FuzzDecompress", "gzip-zlib-concatenated", bytes([0x11 | 0xC0]) + run(["gzip", "-c"], b"a" * 100) + run(["gzip", "-c"], b"b"))

        # 3. tar: flags, split byte, archive. Real archives from GNU tar.
        work = os.path.join(tmp, "t")
        os.makedirs(os.path.join(work, "d", "sub"))
        with open(os.path.join(work, "d", "sparse.img"), "wb") as fh:
            fh.seek(5000)
            fh.write(b"data" * 300)
            fh.seek(12000)
            fh.write(b"end")
            fh.truncate(16000)
        with open(os.path.join(work, "d", "sub", "n" * 120), "wb") as fh:
            fh.write(b"long name\n")
        os.symlink("sparse.img", os.path.join(work, "d", "link"))
        os.link(os.path.join(work, "d", "sparse.img"), os.path.join(work, "d", "hard"))
        common = ["tar", "-c", "-b", "1", "--owner=0", "--group=0", "--mtime=@1700000000", "--sort=name", "-C", work]
        variants = {
            "gnu-sparse": ["--format=gnu", "--sparse"],
            "pax-sparse-0.0": ["--format=posix", "--sparse", "--sparse-version=0.0"],
            "pax-sparse-0.1": ["--format=posix", "--sparse", "--sparse-version=0.1"],
            "pax-sparse-1.0": ["--format=posix", "--sparse", "--sparse-version=1.0"],
            "ustar": ["--format=ustar", "--exclude=n*"],
            "v7": ["--format=v7", "--exclude=n*", "--exclude=sub"],
        }
        for name, opts in variants.items():
            archive = run(common + opts + ["d"])
            write("FuzzTar", name, bytes([0x00, 0]) + archive)
            write("FuzzTar", name + "-fragments", bytes([0x02, 0]) + archive)
        write("FuzzTar", "pax-sparse-1.0-extract", bytes([0x04, 0]) + run(common + variants["pax-sparse-1.0"] + ["d"]))
        write("FuzzTar", "gnu-sparse-extract", bytes([0x04, 0]) + run(common + variants["gnu-sparse"] + ["d"]))
        # Multi-volume: two volumes, split after the first.
        with open(os.path.join(work, "big"), "wb") as fh:
            fh.write(bytes(range(256)) * 60)
        vol1, vol2 = os.path.join(tmp, "v1.tar"), os.path.join(tmp, "v2.tar")
        subprocess.run(["tar", "-c", "-b", "1", "-M", "-L", "10", "--format=gnu", "-C", work, "-f", vol1, "-f", vol2, "big"],
                       check=True, stdin=subprocess.DEVNULL)
        one, two = open(vol1, "rb").read(), open(vol2, "rb").read()
        write("FuzzTar", "gnu-multivolume", bytes([0x10, len(one) // 512]) + one + two)
        # The outer stream of a backup: concatenated sessions.
        outer = open(os.path.join(FIXTURES, "v4-inner-absolute.qubes"), "rb").read()
        write("FuzzTar", "outer-v4", bytes([0x01, 0]) + outer)

    # 8. chunk names: flags, then LF-separated member names.
    write("FuzzChunkNames", "v3", b"\0" + "\n".join(names("v3-plain-uncompressed.qubes")[2:]).encode())
    write("FuzzChunkNames", "v4", b"\1" + "\n".join(names("v4-gzip.qubes")[2:]).encode())
    write("FuzzChunkNames", "v2-from-001", b"\2" + b"vm1/private.img.001\nvm1/private.img.001.hmac\nvm1/private.img.002\nvm1/private.img.002.hmac")

    # 9. whole small backups.
    for f in ["v3-duplicate-key.qubes", "v4-inner-absolute.qubes", "v4-inner-dotdot.qubes", "v4-inner-symlink.qubes",
              "v3-oversized-hmac.qubes"]:
        write("FuzzRestore", f.replace(".qubes", ""), open(os.path.join(FIXTURES, f), "rb").read())

    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(SEEDS) for f in fs)
    print(f"seeds: {total} bytes in {SEEDS}")


if __name__ == "__main__":
    sys.exit(main())
