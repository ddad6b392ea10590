#!/usr/bin/env python3
"""Regenerates FuzzTesting/Seeds/<target>/ from Tests/Fixtures and small
archives made with the real programs (GNU tar, openssl, scrypt, gzip, bzip2,
xz, zstd; mke2fs, debugfs and sfdisk for the filesystem images). The seeds are
committed; run this only to rebuild them (`make-seeds.py FuzzFilesystem`
rebuilds only the filesystem seeds):

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


def filesystem_image(args, size, src, debugfs=None):
    """An image made by mke2fs from `src`, then changed by debugfs -w commands."""
    with tempfile.TemporaryDirectory() as d:
        img = os.path.join(d, "img")
        # Fixed UUID, hash seed and time: seeds differ between runs only in ctimes.
        subprocess.run(["mke2fs", "-q", "-F", "-E", "root_owner=0:0,hash_seed=5eed5eed-0000-4000-8000-000000000000",
                        "-U", "0b5e55ed-0000-4000-8000-000000000000"] + args + ["-d", src, img, size],
                       env=dict(os.environ, E2FSPROGS_FAKE_TIME="1764547200"), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if debugfs:
            cmds = debugfs(img, d)
            subprocess.run(["debugfs", "-w", "-f", "-", img], input="\n".join(cmds).encode(), check=True,
                           env=dict(os.environ, E2FSPROGS_FAKE_TIME="1764547200"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return open(img, "rb").read()


def block_of(img, path):
    out = subprocess.run(["debugfs", "-R", f"bmap {path} 0", img], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    return int(out.split()[0])


def features(image):
    with tempfile.NamedTemporaryFile() as f:
        f.write(image)
        f.flush()
        out = subprocess.run(["dumpe2fs", "-h", f.name], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
    return next((l.split(":", 1)[1].split() for l in out.splitlines() if l.startswith("Filesystem features")), [])


def filesystem_input(image):
    """FuzzEntries.filesystem's layout: up to seven longest runs of zero
    KiB cut out, their offsets (in the cut image) and lengths in front."""
    image += bytes(-len(image) % 1024)
    kib = len(image) // 1024
    zero = [not any(image[i * 1024:(i + 1) * 1024]) for i in range(kib)]
    runs, run_start = [], None
    for i in range(kib + 1):
        z = i < kib and zero[i]
        if z and run_start is None:
            run_start = i
        if not z and run_start is not None:
            # Runs longer than a header field holds are cut in pieces.
            for s in range(run_start, i, 0x0FFF):
                runs.append((s, min(i, s + 0x0FFF) - s))
            run_start = None
    runs = sorted(sorted(runs, key=lambda r: -r[1])[:7])
    header, out, pos, removed = [], b"", 0, 0
    for start, length in runs:
        out += image[pos * 1024:start * 1024]
        header.append((start - removed, length))
        removed += length
        pos = start + length
    out += image[pos * 1024:]
    return bytes([len(header)]) + b"".join(a.to_bytes(2, "little") + n.to_bytes(2, "little") for a, n in header) + out


def filesystem_seeds():
    """ext2/3/4 images of a small tree, as FuzzEntries.filesystem reads them."""
    shutil.rmtree(os.path.join(SEEDS, "FuzzFilesystem"), ignore_errors=True)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src")
        os.makedirs(os.path.join(src, "sub", "deeper"))
        with open(os.path.join(src, "a.txt"), "wb") as f:
            f.write(b"hello, filesystem\n")
        with open(os.path.join(src, "sub", "b.txt"), "wb") as f:
            f.write(bytes((i * 7 + i // 251) & 0xFF for i in range(14 * 1024 + 100)))   # past 12 direct blocks
        with open(os.path.join(src, "sub", "sparse"), "wb") as f:
            f.seek(9000)
            f.write(b"after a hole\n")
            f.truncate(20000)
        open(os.path.join(src, "empty"), "wb").close()
        os.link(os.path.join(src, "a.txt"), os.path.join(src, "sub", "hard"))
        os.symlink("a.txt", os.path.join(src, "link"))
        os.symlink("sub/" + "x" * 90, os.path.join(src, "sub", "deeper", "slow-link"))
        os.mkfifo(os.path.join(src, "fifo"))
        # An indexed (htree) directory: more names than one 1 KiB block holds.
        many = os.path.join(d, "many")
        run(["cp", "-a", src, many])
        os.makedirs(os.path.join(many, "many"))
        for i in range(48):
            open(os.path.join(many, "many", f"file-with-a-longish-name-{i:03}"), "wb").close()
        # Fixed times (mke2fs -d copies them; not ctime, which is the host's).
        for top in (src, many):
            for root, dirs, files in os.walk(top):
                for n in dirs + files + ([""] if root == top else []):
                    os.utime(os.path.join(root, n), (1764547200, 1764547200), follow_symlinks=False)

        def journal(paths, checksums=False):
            """debugfs commands: a dirty journal whose transactions replace
            the first data block of each path (one revoked, one not
            committed), with checksums (v3) when asked."""
            def commands(img, tmp):
                blocks = [block_of(img, p) for p in paths]
                cmds = ["jo -c" if checksums else "jo"]
                for i, b in enumerate(blocks):
                    data = os.path.join(tmp, f"j{i}")
                    with open(data, "wb") as f:
                        if paths[i].endswith("/"):
                            # A directory block: its own bytes (1 KiB blocks), so it still reads.
                            with open(img, "rb") as fs:
                                fs.seek(b * 1024)
                                f.write(fs.read(1024))
                        else:
                            f.write((b"journaled %d " % i) * 100)
                    cmds.append(f"jw -b {b} {data}")
                cmds.append(f"jw -r {blocks[0]}")
                cmds.append(f"jw -c -b {blocks[-1]} {os.path.join(tmp, 'j0')}")
                cmds.append("jc")
                return cmds
            return commands

        images = {
            "ext2-1k": (["-t", "ext2", "-b", "1024", "-N", "32"], "96K", src, None, "ext_attr"),
            "ext3-1k": (["-t", "ext3", "-b", "1024", "-N", "32", "-J", "size=1"], "2100K", src, None, "has_journal"),
            "ext4-csum-htree": (["-t", "ext4", "-b", "1024", "-N", "96", "-O", "^has_journal,metadata_csum"], "128K", many, None,
                                "metadata_csum"),
            "ext4-inline": (["-t", "ext4", "-b", "1024", "-N", "32", "-I", "256", "-O", "^has_journal,inline_data"], "96K", src, None,
                            "inline_data"),
            "ext4-64bit-4k": (["-t", "ext4", "-b", "4096", "-N", "32", "-O", "^has_journal,64bit,metadata_csum"], "256K", src, None,
                              "64bit"),
            "ext3-dirty-journal": (["-t", "ext3", "-b", "1024", "-N", "32", "-J", "size=1"], "2100K", src,
                                   journal(["/a.txt", "/sub/b.txt"]), "needs_recovery"),
            "ext4-dirty-journal-csum": (["-t", "ext4", "-b", "1024", "-N", "32", "-J", "size=1", "-O", "metadata_csum"], "2100K",
                                        src, journal(["/sub/b.txt", "/a.txt", "/"], checksums=True), "needs_recovery"),
        }
        for name, (args, size, tree, debugfs, feature) in images.items():
            image = filesystem_image(args, size, tree, debugfs)
            assert feature in features(image), f"{name}: no {feature} in {features(image)}"
            write("FuzzFilesystem", name, filesystem_input(image))
            if name == "ext4-csum-htree":
                # Bit 3 of the first byte: checksums verified (they match).
                seed = filesystem_input(image)
                write("FuzzFilesystem", name + "-verified", bytes([seed[0] | 0x08]) + seed[1:])

        # A GPT disk: three partitions, ext4 in the third (the only one with a filesystem).
        fs = filesystem_image(["-t", "ext4", "-b", "1024", "-N", "32", "-O", "^has_journal"], "96K", src)
        disk = os.path.join(d, "disk")
        with open(disk, "wb") as f:
            f.truncate((34 + 8 + 8 + len(fs) // 512 + 33) * 512)
        layout = (f"label: gpt\nlabel-id: 0B5E55ED-0000-4000-8000-00000000D15C\nfirst-lba: 34\n"
                  + "".join(f"start={start}, size={size}, uuid=0B5E55ED-0000-4000-8000-00000000000{i + 1}\n"
                            for i, (start, size) in enumerate([(34, 8), (42, 8), (50, len(fs) // 512)])))
        subprocess.run(["sfdisk", "-q", disk], input=layout.encode(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(disk, "r+b") as f:
            f.seek(50 * 512)
            f.write(fs)
        write("FuzzFilesystem", "gpt-ext4-partition-3", filesystem_input(open(disk, "rb").read()))

        # An MBR disk: a primary partition, then ext2 in logical partition 5
        # of an extended partition (an EBR chain of one).
        fs = filesystem_image(["-t", "ext2", "-b", "1024", "-N", "32"], "96K", src)
        disk = os.path.join(d, "mbr")
        with open(disk, "wb") as f:
            f.truncate((1 + 8 + 1 + 2 + len(fs) // 512) * 512)
        layout = (f"label: dos\nlabel-id: 0x0b5e55ed\nstart=1, size=8, type=83\nstart=9, size={2 + len(fs) // 512 + 1}, type=5\n"
                  f"start=12, size={len(fs) // 512}, type=83\n")
        subprocess.run(["sfdisk", "-q", disk], input=layout.encode(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = subprocess.run(["sfdisk", "-d", disk], stdout=subprocess.PIPE, check=True).stdout.decode()
        start = int(next(l for l in out.splitlines() if l.startswith(disk + "5")).split("start=")[1].split(",")[0])
        with open(disk, "r+b") as f:
            f.seek(start * 512)
            f.write(fs)
        write("FuzzFilesystem", "mbr-ext2-logical-5", filesystem_input(open(disk, "rb").read()))


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

    # 10. ext2/3/4 images.
    filesystem_seeds()

    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(SEEDS) for f in fs)
    print(f"seeds: {total} bytes in {SEEDS}")


if __name__ == "__main__":
    # `make-seeds.py FuzzFilesystem` rebuilds only the filesystem seeds.
    sys.exit(filesystem_seeds() if sys.argv[1:] == ["FuzzFilesystem"] else main())
