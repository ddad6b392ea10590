#!/usr/bin/env python3
"""compare-tree.py [options] SRC DST

Exit 0 only if the tree DST reproduces the tree SRC:
  * the same set of relative paths (minus --ignore'd ones);
  * for each path the same type (file, dir, symlink, fifo, char/block device, socket);
  * regular files: same size and same bytes (holes in both are skipped;
    the SHA-256s are printed when they differ);
  * symlinks: same target (os.readlink, never followed);
  * same permission bits (mode & 0o7777; --no-special masks 0o7000);
  * same mtime seconds for files, symlinks and others (--skip-dir-mtime skips dirs);
  * hard links: the partition of paths into inode groups is the same;
  * sparse files: a SRC file whose allocation (st_blocks*512) is below its size
    must also be allocated below its size in DST (holes kept);
  * FIFOs exist as FIFOs (--skip-special: FIFOs, devices and sockets may be missing).
Prints one line per difference ("path: what differs") and a summary line.
Exit status: 0 same, 1 differences, 2 usage error.
"""
import argparse
import errno
import hashlib
import os
import stat
import sys


def kind(mode):
    for test, name in ((stat.S_ISREG, 'file'), (stat.S_ISDIR, 'directory'),
                       (stat.S_ISLNK, 'symlink'), (stat.S_ISFIFO, 'fifo'),
                       (stat.S_ISCHR, 'char-device'), (stat.S_ISBLK, 'block-device'),
                       (stat.S_ISSOCK, 'socket')):
        if test(mode):
            return name
    return 'unknown'


def walk(top):
    """relative path -> lstat result, for every entry below top (top itself is '.')."""
    out = {'.': os.lstat(top)}
    def rec(rel):
        full = os.path.join(top, rel) if rel != '.' else top
        with os.scandir(full) as it:
            names = sorted(e.name for e in it)
        for n in names:
            r = n if rel == '.' else os.path.join(rel, n)
            st = os.lstat(os.path.join(top, r))
            out[r] = st
            if stat.S_ISDIR(st.st_mode):
                rec(r)
    rec('.')
    return out


def data_ranges(f, size):
    """[(start, end)] of the data (non-hole) parts of an open file; whole file if unsupported."""
    out, pos = [], 0
    try:
        while pos < size:
            start = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            end = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            out.append((start, min(end, size)))
            pos = end
    except OSError as e:
        if e.errno == 6 or e.errno == errno.ENXIO:   # no more data
            return out
        return [(0, size)]
    return out


def same_content(a, b, size):
    """Byte comparison that skips ranges that are holes in both files (fast for 1 GiB holes)."""
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        ranges = sorted(data_ranges(fa, size) + data_ranges(fb, size))
        merged = []
        for s, e in ranges:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        for s, e in merged:
            fa.seek(s); fb.seek(s)
            while s < e:
                n = min(e - s, 1 << 20)
                if fa.read(n) != fb.read(n):
                    return False
                s += n
    return True


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument('src')
    ap.add_argument('dst')
    ap.add_argument('--ignore', action='append', default=[], metavar='PATH',
                    help='relative path expected to be absent from DST (and everything below it); repeatable')
    ap.add_argument('--extra', action='append', default=[], metavar='PATH',
                    help='relative path DST may hold that SRC lacks (lost+found, which mke2fs adds); repeatable')
    ap.add_argument('--skip', action='append', default=[], metavar='PATH',
                    help='relative path not compared at all (whether present or not); repeatable')
    ap.add_argument('--no-special', action='store_true',
                    help='compare mode & 0o777 (setuid/setgid/sticky dropped by extraction)')
    ap.add_argument('--skip-special', action='store_true',
                    help='FIFOs, devices and sockets of SRC may be missing from DST')
    ap.add_argument('--skip-dir-mtime', action='store_true', help="don't compare directories' mtimes")
    ap.add_argument('--skip-root', action='store_true',
                    help="don't compare the mode and mtime of the top directories themselves")
    ap.add_argument('--no-sparse', action='store_true', help="don't check that holes are kept")
    ap.add_argument('--no-links', action='store_true', help="don't check hard-link groups")
    args = ap.parse_args()

    for d in (args.src, args.dst):
        if not os.path.isdir(d) or os.path.islink(d):
            print(f'{d}: not a directory', file=sys.stderr)
            return 2

    ignored = [os.path.normpath(p).lstrip('/') for p in args.ignore]
    def is_ignored(rel):
        return any(rel == p or rel.startswith(p + '/') for p in ignored)

    skipped = [os.path.normpath(p).lstrip('/') for p in args.skip]
    def is_skipped(rel):
        return any(rel == p or rel.startswith(p + '/') for p in skipped)
    src = {k: v for k, v in walk(args.src).items() if not is_ignored(k) and not is_skipped(k)}
    dst = {k: v for k, v in walk(args.dst).items() if not is_skipped(k)}
    diffs = []
    def diff(path, what):
        diffs.append(f'{path}: {what}')

    extras = [os.path.normpath(p).lstrip('/') for p in args.extra]
    for rel in sorted(set(dst) - set(src)):
        if any(rel == p or rel.startswith(p + '/') for p in extras):
            continue
        if is_ignored(rel):
            diff(rel, 'present in DST but expected absent (--ignore)')
        else:
            diff(rel, f'only in DST ({kind(dst[rel].st_mode)})')
    special_kinds = ('fifo', 'char-device', 'block-device', 'socket')
    permmask = 0o777 if args.no_special else 0o7777
    checked = 0
    for rel in sorted(src):
        s = src[rel]
        sk = kind(s.st_mode)
        if rel not in dst:
            if not (args.skip_special and sk in special_kinds):
                diff(rel, f'missing from DST ({sk})')
            continue
        d = dst[rel]
        dk = kind(d.st_mode)
        checked += 1
        if sk != dk:
            diff(rel, f'type {sk} in SRC, {dk} in DST')
            continue
        sp, dp = os.path.join(args.src, rel), os.path.join(args.dst, rel)
        is_root = rel == '.'
        if not (is_root and args.skip_root):
            if stat.S_IMODE(s.st_mode) & permmask != stat.S_IMODE(d.st_mode) & permmask:
                diff(rel, f'mode {stat.S_IMODE(s.st_mode) & permmask:04o} in SRC, '
                          f'{stat.S_IMODE(d.st_mode) & permmask:04o} in DST')
            if not (sk == 'directory' and args.skip_dir_mtime):
                if int(s.st_mtime // 1) != int(d.st_mtime // 1):
                    diff(rel, f'mtime {int(s.st_mtime // 1)} in SRC, {int(d.st_mtime // 1)} in DST')
        if sk == 'file':
            if s.st_size != d.st_size:
                diff(rel, f'size {s.st_size} in SRC, {d.st_size} in DST')
            elif not same_content(sp, dp, s.st_size):
                diff(rel, f'content differs (SHA-256 {sha256(sp)[:16]}… in SRC, {sha256(dp)[:16]}… in DST)')
            if not args.no_sparse and s.st_blocks * 512 < s.st_size and d.st_blocks * 512 >= d.st_size:
                diff(rel, f'sparse in SRC ({s.st_blocks * 512} of {s.st_size} bytes allocated), '
                          f'not in DST ({d.st_blocks * 512} allocated)')
        elif sk == 'symlink':
            st, dt = os.readlink(sp), os.readlink(dp)
            if st != dt:
                diff(rel, f'symlink target {st!r} in SRC, {dt!r} in DST')

    if not args.no_links:
        # inode groups among non-directories present on both sides
        def groups(tree, paths):
            g = {}
            for p in paths:
                st = tree[p]
                if not stat.S_ISDIR(st.st_mode):
                    g.setdefault((st.st_dev, st.st_ino), []).append(p)
            return {p: tuple(sorted(v)) for v in g.values() for p in v}
        common = [p for p in src if p in dst and kind(src[p].st_mode) == kind(dst[p].st_mode)]
        gs, gd = groups(src, common), groups(dst, common)
        reported = set()
        for p in sorted(gs):
            if gs[p] != gd.get(p) and gs[p] not in reported:
                reported.add(gs[p])
                diff(p, f'hard links: SRC group {list(gs[p])}, DST group {list(gd.get(p, ()))}')

    for line in diffs:
        print(line)
    if diffs:
        print(f'compare-tree: {len(diffs)} difference(s) between {args.src} and {args.dst} '
              f'({len(src)} entries in SRC)')
        return 1
    print(f'compare-tree: OK, {checked} entries identical ({args.src} vs {args.dst})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
