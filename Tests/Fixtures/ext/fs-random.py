#!/usr/bin/env python3
"""fs-random.py — random ext2/3/4 images made by e2fsprogs, checked against qb-fs.

usage:
  fs-random.py journal --seed N [--qb-fs PATH] [--keep DIR] [-v]
  fs-random.py layout  --seed N [--qb-fs PATH] [--keep DIR] [-v]
  fs-random.py soak --seconds S [--qb-fs PATH] [--first-seed N] [--mode journal|layout]

journal: what a crashed VM leaves. A random source tree goes into image A
  (mke2fs -d). B is A after random changes made with debugfs -w (files written,
  removed, renamed, re-created bigger, punched; directories, symlinks, hard
  links; a directory grown into an htree by e2fsck -fyD; sometimes an offline
  grow, truncate + resize2fs, as qvm-volume extend does). The same changes are
  made to a copy of the tree on the host: the expected tree. A' is A carrying
  B's changes: some of the differing blocks written in place, the others in
  jbd2 transactions written with debugfs (several transactions, bogus versions
  superseded or revoked, sometimes a final uncommitted one), needs_recovery set.
  Checks: e2fsck -fy accepts a copy C of A' and a second e2fsck -fn finds C
  clean; qb-fs -x of A' (replayed in memory) and of C both give the expected
  tree; qb-fs leaves A' unchanged.
layout: a random mke2fs feature set (ext2/3/4; 1, 2, 4, 64 KiB blocks; bigalloc;
  meta_bg, also past s_first_meta_bg; sparse_super2; ^resize_inode; ^filetype,
  also cleared by tune2fs; inline_data; 128-byte inodes; ^64bit; huge_file;
  large_dir; metadata_csum and flex_bg on or off; small block groups) filled
  from a random tree, with a file fragmented into an extent tree of depth >= 2
  where blocks are at most 4 KiB. Checks: e2fsck -fn clean; qb-fs -x gives the
  tree; qb-fs leaves the image unchanged.
soak: random seeds, the two modes in turn, until S seconds have passed; each
  failing seed is printed with its first reason and the command that
  reproduces it.

Before any qb-fs check the generator checks itself: e2fsck must accept every
image it made, debugfs must read every entry of the expected tree back from
the image (type, permissions, size, links, mtime, bytes, symlink target), and
after e2fsck's replay C must equal B block for block (outside the journal and
the superblocks). When that fails the case is the generator's fault, not qb-fs's.

Exit status: 0 every check passed; 1 differences, one line each naming the
mode and seed (at most 25 lines per check, then a count); 2 usage error, a
tool failure, or a generator problem. soak: 1 if any seed failed, else 2 if
any seed hit a generator problem, else 0.
"""
import argparse
import ctypes
import hashlib
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE_TREE = os.path.join(HERE, 'compare-tree.py')
# The same fixed identity as make-image.sh, so that a seed makes the same images.
FAKE_TIME = 1434369600                              # 2015-06-15 12:00:00 UTC
FS_UUID = '5ca1ab1e-0000-4000-8000-00000000e474'
HASH_SEED = '0ddba11a-0000-4000-8000-00000000e474'
COMPARE_OPTIONS = ['--no-special', '--skip-root', '--extra', 'lost+found']   # as FilesystemToolTests
JBD2_MAGIC = b'\xc0\x3b\x39\x98'
MAX_LINES_PER_CHECK = 25
TOOL_TIMEOUT = 300
QBFS_TIMEOUT = 120

ENV = dict(os.environ)
ENV.update(MKE2FS_CONFIG=os.path.join(HERE, 'mke2fs.conf'), E2FSPROGS_FAKE_TIME=str(FAKE_TIME),
           E2FSCK_CONFIG=os.devnull, LC_ALL='C.UTF-8', TZ='UTC')
ENV.pop('DEBUGFS_PAGER', None)
ENV.pop('PAGER', None)


class GeneratorProblem(Exception):
    """A tool failed, or the generator made a case that e2fsprogs itself does not read as
    intended: a bug in this script (or in e2fsprogs), never a qb-fs failure."""


def run(args, ok=(0,), timeout=TOOL_TIMEOUT):
    args = [str(a) for a in args]
    try:
        p = subprocess.run(args, env=ENV, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GeneratorProblem(f'{" ".join(args[:3])}: timed out after {timeout} s')
    p.out = p.stdout.decode('utf-8', 'surrogateescape')
    p.err = p.stderr.decode('utf-8', 'surrogateescape')
    if ok is not None and p.returncode not in ok:
        tail = ' | '.join((p.err.strip() or p.out.strip()).splitlines()[-4:])
        raise GeneratorProblem(f'{" ".join(args[:6])}: exit {p.returncode}: {tail}')
    return p


def copy_sparse(src, dst):
    run(['cp', '--sparse=always', src, dst])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def join(parent, name):
    return name if not parent else parent + '/' + name


def parent_of(rel):
    return rel.rpartition('/')[0]


def quoted(word):
    """One debugfs argument. debugfs splits on blanks and honours double quotes but has no
    escape, so the generator never makes names or targets with '"' or a newline."""
    word = str(word)
    if '"' in word or '\n' in word:
        raise GeneratorProblem(f'cannot pass {word!r} to debugfs')
    return '"' + word + '"'


def dpath(rel):
    return quoted('/' + rel)


# ---------------------------------------------------------------------------
# e2fsprogs queries

def superblock_fields(image):
    fields = {}
    for line in run(['dumpe2fs', '-h', image]).out.splitlines():
        key, sep, value = line.partition(':')
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def block_size(image):
    return int(superblock_fields(image)['Block size'])


def debugfs_read(image, command):
    return run(['debugfs', '-R', command, image]).out


def journal_blocks(image):
    """The internal journal's data blocks (inode 8), which the block comparisons leave out."""
    return {int(w) for w in debugfs_read(image, 'blocks <8>').split()}


def group_layout(image):
    """(every block of fixed metadata: superblocks, descriptors, reserved GDT, bitmaps, inode
    tables), (the blocks holding a superblock, primary or backup) — from dumpe2fs."""
    text = run(['dumpe2fs', image]).out
    meta, supers = set(), set()
    for m in re.finditer(r'(superblock|Group descriptors?|Reserved GDT blocks|Block bitmap|Inode bitmap|Inode table) '
                         r'at (\d+)(?:-(\d+))?', text):
        first = int(m.group(2))
        last = int(m.group(3)) if m.group(3) else first
        meta.update(range(first, last + 1))
        if m.group(1) == 'superblock':
            supers.add(first)
    return meta, supers


def extent_depth(image, rel):
    """Depth of a file's extent tree as debugfs ex prints it ('Level Entries': 0/ 2 ...)."""
    depths = [int(m.group(1)) for m in re.finditer(r'^\s*\d+/\s*(\d+)', debugfs_read(image, f'ex {dpath(rel)}'), re.M)]
    return max(depths) if depths else 0


def run_debugfs_script(image, lines, scratch, name, writable=True):
    """Runs a debugfs -f script; any message that is not the echo of a command is an error
    (debugfs goes on after a failed command and still exits 0)."""
    path = os.path.join(scratch, name + '.debugfs')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    args = ['debugfs'] + (['-w'] if writable else []) + ['-f', path, image]
    p = run(args)
    problems = [l for l in p.err.splitlines() if l.strip() and not l.startswith('debugfs 1.')]
    problems += [l for l in p.out.splitlines() if l.strip() and not re.match(
        r'debugfs: |Allocated inode: |Setting csum v|Filesystem features:', l)]
    if problems:
        raise GeneratorProblem(f'debugfs script {name} ({path}): ' + ' | '.join(problems[:5]))
    return p


# ---------------------------------------------------------------------------
# The random source tree

ASCII_NAME_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+=@~,% '
WIDE_NAME_CHARS = 'éüßøåçñЖЯλΩ☃★→日本語中文한국😀🎉🦀'
FILE_MODES = [0o644, 0o644, 0o600, 0o755, 0o444, 0o640, 0o700, 0o664, 0o555]
DIR_MODES = [0o755, 0o755, 0o750, 0o700, 0o711, 0o775]


def random_name(rng, taken, long_ok=True):
    while True:
        r = rng.random()
        if long_ok and r < 0.07:
            # exactly 255 bytes of UTF-8, the longest name ext4 stores
            chars, size = [], 0
            while True:
                c = rng.choice(WIDE_NAME_CHARS + 'abc')
                if size + len(c.encode()) > 255:
                    break
                chars.append(c)
                size += len(c.encode())
            name = ''.join(chars) + 'z' * (255 - size)
        elif r < 0.35:
            name = ''.join(rng.choice(WIDE_NAME_CHARS + 'abcdef -_') for _ in range(rng.randint(1, 16)))
        else:
            name = ''.join(rng.choice(ASCII_NAME_CHARS) for _ in range(rng.randint(1, 20)))
        if name not in ('.', '..', 'lost+found') and name not in taken:
            return name


def random_mtime(rng):
    """Seconds since 1970 that every inode size stores: 32 bits, signed."""
    r = rng.random()
    if r < 0.1:
        t = rng.choice([0, -1, 1, 2 ** 31 - 1, -2 ** 31, 946684799, -14182940])
    elif r < 0.2:
        t = rng.randint(-2 ** 31, 2 ** 31 - 1)
    else:
        t = rng.randint(1262304000, 1767225600)          # 2010 .. 2026
    return t


def sif_mtime(rel, t, large_inodes):
    """debugfs lines setting an mtime. sif's @SECONDS takes no minus sign, and its dates before
    1970 are sometimes a day off (1.47.0), so a time before 1970 goes in as its 32-bit two's
    complement, and on inodes with extra fields the epoch bits it then sets are cleared."""
    if t >= 0:
        return [f'sif {dpath(rel)} mtime @{t}']
    return [f'sif {dpath(rel)} mtime @{t + (1 << 32)}'] + ([f'sif {dpath(rel)} mtime_extra 0'] if large_inodes else [])


def random_symlink_target(rng, max_len):
    if rng.random() < 0.5 or max_len < 60:
        n = rng.choice([1, 2, 15, 58, 59, rng.randint(1, 59)])
    else:
        n = rng.choice([60, 61, min(max_len, 300), max_len, rng.randint(60, max_len)])
    n = min(n, max_len)
    parts = []
    while len('/'.join(parts).encode()) < n:
        parts.append(rng.choice(['..', 'x', 'dir', 'héllo', '日本', 'a b', 'segment' + str(rng.randint(0, 99))]))
    target = '/'.join(parts)
    if rng.random() < 0.2:
        target = '/' + target
    data = target.encode()[:n]
    return data.decode('utf-8', 'ignore') or 'x'


class Content:
    """A file's bytes as data runs at offsets in a file of a given size (the rest is holes)."""

    def __init__(self, size, runs):
        self.size, self.runs = size, runs

    def write(self, path):
        with open(path, 'wb') as f:
            f.truncate(self.size)
            for offset, data in self.runs:
                f.seek(offset)
                f.write(data)

    def data_bytes(self):
        return sum(len(d) for _, d in self.runs)


def random_content(rng, kind, align, budget, trailing_hole=True):
    """Content of one of the kinds below; hole boundaries are multiples of align (at least
    4 KiB, the host's block, and at least the image's block) so holes stay holes."""
    def data(n):
        return rng.randbytes(n)
    if kind == 'empty':
        return Content(0, [])
    if kind == 'tiny':                                  # fits in i_block (inline_data)
        n = rng.choice([1, 59, 60, rng.randint(1, 60)])
        return Content(n, [(0, data(n))])
    if kind == 'small':
        n = rng.choice([61, 4095, 4096, 4097, rng.randint(61, 9000)])
        return Content(n, [(0, data(n))])
    if kind == 'medium':
        n = rng.randint(9000, max(9001, min(400000, budget)))
        return Content(n, [(0, data(n))])
    if kind == 'large':                                 # spans several extents by itself on 1 KiB blocks
        n = rng.randint(400000, max(400001, min(3 << 20, budget)))
        return Content(n, [(0, data(n))])
    if kind == 'magic':                                 # every KiB starts with the jbd2 magic: escaped when journaled
        blocks = rng.randint(2, 12)
        body = b''.join(JBD2_MAGIC + data(1020) for _ in range(blocks * 4))
        return Content(len(body), [(0, body)])
    if kind == 'runs':                                  # data runs between holes: several extents
        runs, pos = [], 0
        for _ in range(rng.randint(3, 8)):
            pos += align * rng.choice([0, 1, 1, 2, 5, 16])
            length = align * rng.randint(1, 4) - rng.choice([0, 0, rng.randint(1, align - 1)])
            runs.append((pos, data(length)))
            pos += align * ((length + align - 1) // align)
        size = pos + (rng.choice([0, 0, align * rng.randint(1, 8)]) if trailing_hole else 0)
        if not trailing_hole:
            size = runs[-1][0] + len(runs[-1][1])
        return Content(size, runs)
    if kind == 'hole-start':
        hole = align * rng.randint(1, 64)
        n = rng.randint(1, 3 * align)
        return Content(hole + n, [(hole, data(n))])
    if kind == 'hole-middle':
        a, hole, b = align * rng.randint(1, 3), align * rng.randint(1, 256), rng.randint(1, 2 * align)
        return Content(a + hole + b, [(0, data(a)), (a + hole, data(b))])
    if kind == 'hole-end':
        n = rng.randint(1, 3 * align)
        end = align * ((n + align - 1) // align) + align * rng.randint(1, 128)
        return Content(end, [(0, data(n))])
    if kind == 'all-hole':
        return Content(align * rng.randint(1, 64), [])
    raise ValueError(kind)


CONTENT_KINDS = ['empty', 'tiny', 'tiny', 'small', 'small', 'small', 'medium', 'medium', 'large', 'magic',
                 'runs', 'runs', 'hole-start', 'hole-middle', 'hole-end', 'all-hole']


class TreeSpec:
    """What the image can hold, which decides how the tree is made."""

    def __init__(self, block, unit=None, budget=8 << 20, symlink_max=4095, fragmented=False,
                 fifo=True, files=(12, 40), dirs=(3, 10), trailing_holes=True, big_dir=False):
        self.block = block
        self.unit = unit or block                    # allocation unit: a block or a bigalloc cluster
        # Hole boundaries: mke2fs -d maps every block of a cluster it allocates (a hole inside
        # one becomes a block of zeros the image maps), so with bigalloc holes are whole clusters.
        self.align = max(4096, block, self.unit)
        self.budget = budget                          # bytes of allocation the tree may use
        self.symlink_max = min(symlink_max, block - 1)   # ext2fs_symlink wants target < block size
        self.fragmented = fragmented                  # add a file with an extent tree of depth >= 2
        self.fifo, self.files, self.dirs = fifo, files, dirs
        # mke2fs -d 1.47.0 with inline_data stores a file whose data ends before its size (or
        # that has no data) as inline data of the size of its data, or of 60 bytes with the
        # full i_size, which is not a file the kernel can read back: none such there.
        self.trailing_holes = trailing_holes
        self.big_dir = big_dir                        # a directory of several blocks (e2fsck -D indexes it)


def build_tree(rng, root, spec):
    """A random tree under root (which must not exist). Returns notes on special files."""
    os.mkdir(root)
    notes = {'fragmented': None, 'big_dir': None}
    used = 0
    dirs = ['']
    for _ in range(rng.randint(*spec.dirs)):
        parent = rng.choice([d for d in dirs if d.count('/') < 5])
        name = random_name(rng, set(os.listdir(os.path.join(root, parent))))
        rel = join(parent, name)
        os.mkdir(os.path.join(root, rel))
        dirs.append(rel)
        used += spec.unit
    files = []
    for _ in range(rng.randint(*spec.files)):
        parent = rng.choice(dirs)
        rel = join(parent, random_name(rng, set(os.listdir(os.path.join(root, parent)))))
        content = None
        for _ in range(8):
            kind = rng.choice([k for k in CONTENT_KINDS if spec.trailing_holes or k not in ('hole-end', 'all-hole')])
            content = random_content(rng, kind, spec.align, spec.budget - used, spec.trailing_holes)
            cost = sum(spec.unit * ((len(d) + spec.unit - 1) // spec.unit + 1) for _, d in content.runs)
            if used + cost + spec.unit <= spec.budget:
                break
            content = Content(0, [])
        content.write(os.path.join(root, rel))
        os.chmod(os.path.join(root, rel), rng.choice(FILE_MODES))
        used += spec.unit + sum(spec.unit * ((len(d) + spec.unit - 1) // spec.unit + 1) for _, d in content.runs)
        files.append(rel)
    if spec.big_dir:
        parent = rng.choice(dirs)
        rel = join(parent, random_name(rng, set(os.listdir(os.path.join(root, parent))), long_ok=False))
        os.mkdir(os.path.join(root, rel))
        for i in range(rng.randint(3 * spec.block // 40, 12 * spec.block // 40)):
            name = f'entry-{i:05d}-' + ''.join(rng.choice('abcdefghijklmnop') for _ in range(rng.randint(4, 40)))
            open(os.path.join(root, rel, name), 'wb').close()
        notes['big_dir'] = rel
    if spec.fragmented:
        # One block of data every other block: one extent per island. Four extents fit in the
        # inode and (block-12)/12 in a leaf block, so more than 4*that islands need depth 2.
        per_leaf = (spec.block - 12) // 12
        islands = 4 * per_leaf + rng.randint(20, 200)
        parent = rng.choice(dirs)
        rel = join(parent, random_name(rng, set(os.listdir(os.path.join(root, parent))), long_ok=False))
        runs = [(2 * i * spec.block, rng.randbytes(spec.block)) for i in range(islands)]
        Content(2 * islands * spec.block - spec.block, runs).write(os.path.join(root, rel))
        os.chmod(os.path.join(root, rel), 0o644)
        files.append(rel)
        notes['fragmented'] = rel
    # hard links, in the same directory and across directories
    for _ in range(rng.randint(0, 4)):
        if not files:
            break
        target = rng.choice(files)
        parent = rng.choice([parent_of(target), rng.choice(dirs)])
        rel = join(parent, random_name(rng, set(os.listdir(os.path.join(root, parent)))))
        os.link(os.path.join(root, target), os.path.join(root, rel))
    for _ in range(rng.randint(2, 8)):
        parent = rng.choice(dirs)
        rel = join(parent, random_name(rng, set(os.listdir(os.path.join(root, parent)))))
        os.symlink(random_symlink_target(rng, spec.symlink_max), os.path.join(root, rel))
    if spec.fifo and rng.random() < 0.3:
        parent = rng.choice(dirs)
        rel = join(parent, random_name(rng, set(os.listdir(os.path.join(root, parent)))))
        os.mkfifo(os.path.join(root, rel), 0o644)
        os.chmod(os.path.join(root, rel), 0o644)
    for top, subdirs, names in os.walk(root):
        for n in names:
            os.utime(os.path.join(top, n), (0, random_mtime(rng)), follow_symlinks=False)
    set_dir_modes_and_mtimes(rng, root)
    return notes


def set_dir_modes_and_mtimes(rng, root):
    """Deepest first, so that setting a child's attributes cannot change its parent's mtime."""
    all_dirs = sorted((top for top, _, _ in os.walk(root)), key=lambda d: (-d.count('/'), d))
    for d in all_dirs:
        rel = os.path.relpath(d, root)
        rel = '' if rel == '.' else rel
        if rel:
            os.chmod(d, rng.choice(DIR_MODES))
        os.utime(d, (0, random_mtime(rng)))


def walk_tree(root):
    """relative path -> lstat, sorted, without the root itself."""
    out = {}
    for top, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + names):
            full = os.path.join(top, n)
            out[os.path.relpath(full, root)] = os.lstat(full)
    return dict(sorted(out.items()))


def link_lines(existing, new):
    """debugfs ln does not grow a full directory (write, mkdir and symlink do: make_link:
    No free space in the directory), so the directory gets a block first."""
    return [f'expand_dir {dpath(parent_of(new))}', f'ln {dpath(existing)} {dpath(new)}']


def populate_script(host_root, image_parent, make_top, large_inodes):
    """debugfs commands that recreate the host tree host_root at image_parent (rel, '' = /):
    for layouts mke2fs -d cannot make. Hard links are recreated with ln and links_count."""
    lines = []
    if make_top:
        lines.append(f'mkdir {dpath(image_parent)}')
    first_name, links = {}, {}
    entries = walk_tree(host_root)
    for rel, st in entries.items():
        irel = join(image_parent, rel)
        parent, name = parent_of(irel), irel.rpartition('/')[2]
        host = os.path.join(host_root, rel)
        if stat.S_ISDIR(st.st_mode):
            lines.append(f'mkdir {dpath(irel)}')
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in first_name:
                lines += link_lines(first_name[key], irel)
                links[key] += 1
                continue
            first_name[key], links[key] = irel, 1
            lines += [f'cd {dpath(parent)}', f'write {quoted(host)} {quoted(name)}', 'cd /',
                      f'sif {dpath(irel)} mode 0{0o100000 | stat.S_IMODE(st.st_mode):o}',
                      *sif_mtime(irel, int(st.st_mtime), large_inodes)]
        elif stat.S_ISLNK(st.st_mode):
            lines += [f'symlink {dpath(irel)} {quoted(os.readlink(host))}',
                      *sif_mtime(irel, int(st.st_mtime), large_inodes)]
        elif stat.S_ISFIFO(st.st_mode):
            # mknod takes a name in the current directory, not a path
            lines += [f'cd {dpath(parent)}', f'mknod {quoted(name)} p', 'cd /',
                      f'sif {dpath(irel)} mode 0{0o010000 | stat.S_IMODE(st.st_mode):o}',
                      *sif_mtime(irel, int(st.st_mtime), large_inodes)]
    for key, n in links.items():
        if n > 1:
            lines.append(f'sif {dpath(first_name[key])} links_count {n}')
    dirs = [(join(image_parent, rel), st) for rel, st in entries.items() if stat.S_ISDIR(st.st_mode)]
    if make_top:
        dirs.append((image_parent, os.lstat(host_root)))
    for irel, st in sorted(dirs, key=lambda d: -d[0].count('/')):
        lines += [f'sif {dpath(irel)} mode 0{0o040000 | stat.S_IMODE(st.st_mode):o}',
                  *sif_mtime(irel, int(st.st_mtime), large_inodes)]
    return lines


# ---------------------------------------------------------------------------
# Generator self-check: the image, read with debugfs, holds the tree

STAT_TYPES = {'regular': stat.S_IFREG, 'directory': stat.S_IFDIR, 'symlink': stat.S_IFLNK, 'FIFO': stat.S_IFIFO}


def image_disagreements(image, tree, scratch, extra_top=('lost+found',)):
    """Every entry of tree must be in image with the same type, permissions, size, link
    count, mtime and bytes or target, and each directory must list exactly the same names.
    Read with debugfs, so a difference is the generator's (or e2fsprogs') problem."""
    entries = walk_tree(tree)
    dump_dir = os.path.join(scratch, 'selfcheck')
    shutil.rmtree(dump_dir, ignore_errors=True)
    os.mkdir(dump_dir)
    commands, what = [], []
    for rel in [''] + [r for r, st in entries.items() if stat.S_ISDIR(st.st_mode)]:
        commands.append(f'ls -p {dpath(rel)}')
        what.append(('ls', rel, None))
    for i, (rel, st) in enumerate(entries.items()):
        commands.append(f'stat {dpath(rel)}')
        what.append(('stat', rel, None))
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            out = os.path.join(dump_dir, str(i))
            commands.append(f'dump {dpath(rel)} {quoted(out)}')
            what.append(('dump', rel, out))
    path = os.path.join(scratch, 'selfcheck.debugfs')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(commands) + '\n')
    p = run(['debugfs', '-f', path, image])
    sections, current = [], None
    for line in p.out.splitlines():
        if line.startswith('debugfs: '):
            current = []
            sections.append(current)
        elif current is not None:
            current.append(line)
    if len(sections) != len(commands):
        return [f'debugfs answered {len(sections)} of {len(commands)} commands: {p.err.strip()[:200]}']
    problems = []
    stats = {}
    for (kind, rel, out), lines in zip(what, sections):
        shown = '/' + rel
        if kind == 'ls':
            names = set()
            for l in lines:
                parts = l.split('/')
                if len(parts) == 8 and parts[1] != '0' and parts[5] not in ('.', '..'):
                    names.add(parts[5])
            want = set(os.listdir(os.path.join(tree, rel)))
            if rel == '':
                names -= set(extra_top)
            if names != want:
                problems.append(f'{shown}: image lists {sorted(names - want)[:5]} extra, '
                                f'{sorted(want - names)[:5]} missing')
        elif kind == 'stat':
            text = '\n'.join(lines)
            m = re.search(r'Type: (\S+)\s+Mode:\s+(\d+)', text)
            if not m:
                problems.append(f'{shown}: not in the image')
                continue
            st = entries[rel]
            info = {'type': m.group(1), 'mode': int(m.group(2), 8)}
            info['links'] = int(re.search(r'Links: (\d+)', text).group(1))
            info['size'] = int(re.search(r'Size: (\d+)', text).group(1))
            mt = re.search(r'^\s*mtime: 0x([0-9a-f]+)(?::([0-9a-f]+))?', text, re.M)
            seconds = int(mt.group(1), 16)
            seconds -= (1 << 32) if seconds >= 1 << 31 else 0
            if mt.group(2):
                seconds += (int(mt.group(2), 16) & 3) << 32
            info['mtime'] = seconds
            fast = re.search(r'Fast link dest: "(.*)"$', text, re.M | re.S)
            info['fast_target'] = fast.group(1) if fast else None
            stats[rel] = info
            if STAT_TYPES.get(info['type']) != stat.S_IFMT(st.st_mode):
                problems.append(f'{shown}: type {info["type"]} in the image')
                continue
            if info['mode'] != stat.S_IMODE(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                problems.append(f'{shown}: mode {info["mode"]:o} in the image, {stat.S_IMODE(st.st_mode):o} in the tree')
            if info['links'] != st.st_nlink:
                problems.append(f'{shown}: {info["links"]} links in the image, {st.st_nlink} in the tree')
            if info['mtime'] != int(st.st_mtime):
                problems.append(f'{shown}: mtime {info["mtime"]} in the image, {int(st.st_mtime)} in the tree')
            if not stat.S_ISDIR(st.st_mode) and info['size'] != st.st_size:
                problems.append(f'{shown}: size {info["size"]} in the image, {st.st_size} in the tree')
        elif kind == 'dump':
            info = stats.get(rel)
            if info is None:
                continue
            host = os.path.join(tree, rel)
            if stat.S_ISLNK(entries[rel].st_mode):
                want = os.readlink(host)
                if info['fast_target'] is not None:
                    got = info['fast_target']
                else:
                    with open(out, 'rb') as f:
                        got = f.read()[:info['size']].decode('utf-8', 'surrogateescape')
                if got != want:
                    problems.append(f'{shown}: symlink target differs in the image')
            else:
                # debugfs dump writes all 60 bytes of i_block for an inline file: cut at i_size
                with open(out, 'rb') as f, open(host, 'rb') as g:
                    if f.read()[:info['size']] != g.read():
                        problems.append(f'{shown}: contents differ in the image')
    return problems


def require_image_holds_tree(image, tree, scratch, label):
    problems = image_disagreements(image, tree, scratch)
    if problems:
        raise GeneratorProblem(f'{label} does not hold the expected tree (read with debugfs): '
                               + '; '.join(problems[:6]) + (f' (+{len(problems) - 6} more)' if len(problems) > 6 else ''))


def require_fsck_clean(image, label):
    p = run(['e2fsck', '-fn', image], ok=None)
    if p.returncode != 0:
        lines = [l for l in p.out.splitlines() if l.strip() and not l.startswith(('Pass ', 'e2fsck '))]
        raise GeneratorProblem(f'e2fsck -fn {label}: exit {p.returncode}: ' + ' | '.join(lines[:6]))


def fsck_fix(image, label, extra=()):
    p = run(['e2fsck', '-fy', *extra, image], ok=None)
    if p.returncode not in (0, 1):
        lines = [l for l in p.out.splitlines() if l.strip() and not l.startswith(('Pass ', 'e2fsck '))]
        raise GeneratorProblem(f'e2fsck -fy {" ".join(extra)} {label}: exit {p.returncode}: ' + ' | '.join(lines[:6]))
    return p


# ---------------------------------------------------------------------------
# One case: a seed, a scratch directory, the failures found

class Case:
    def __init__(self, mode, seed, qbfs, scratch, verbose):
        self.mode, self.seed, self.qbfs, self.scratch = mode, seed, qbfs, scratch
        self.verbose = verbose
        self.rng = random.Random(f'{mode}-{seed}')
        self.failures = []
        self.log_lines = []

    def fail(self, what):
        self.failures.append(f'{self.mode} seed {self.seed}: {what}')

    def log(self, text):
        self.log_lines.append(text)
        if self.verbose:
            print(f'[{self.mode} {self.seed}] {text}', file=sys.stderr)

    def path(self, name):
        return os.path.join(self.scratch, name)

    def mke2fs(self, image, size, args, tree=None, extended=()):
        """Returns None, or mke2fs's complaint when it refuses the combination."""
        if os.path.exists(image):
            os.unlink(image)
        with open(image, 'wb') as f:
            f.truncate(size)
        eopts = ','.join(['root_owner=0:0', f'hash_seed={HASH_SEED}', *extended])
        cmd = ['mke2fs', '-q', '-F', '-U', FS_UUID, '-L', 'qb-random', '-E', eopts, *args]
        if tree:
            cmd += ['-d', tree]
        p = run(cmd + [image], ok=None)
        if p.returncode != 0:
            return (p.err.strip() or p.out.strip()).splitlines()[-1:] or ['exit %d' % p.returncode]
        return None

    def qbfs_extract(self, image, label, expected, out_name, holes=True):
        """qb-fs -x must exit 0, leave the image as it was, and extract exactly expected;
        its holes too unless `holes` is false (where mke2fs -d does not keep them)."""
        before = sha256_file(image)
        out = self.path(out_name)
        os.mkdir(out)
        try:
            p = subprocess.run([self.qbfs, '-x', '-C', out, image], env=ENV, capture_output=True,
                               timeout=QBFS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f'qb-fs -x {label}: no answer after {QBFS_TIMEOUT} s')
            return
        err = p.stderr.decode('utf-8', 'replace').strip().splitlines()
        if p.returncode != 0:
            self.fail(f'qb-fs -x {label}: exit {p.returncode}' + (f': {err[0]}' if err else ''))
            for line in err[1:MAX_LINES_PER_CHECK]:
                self.fail(f'qb-fs -x {label}: {line}')
        if sha256_file(image) != before:
            self.fail(f'qb-fs -x {label}: the image changed (sha256)')
        c = subprocess.run([sys.executable, COMPARE_TREE, *COMPARE_OPTIONS, *([] if holes else ['--no-sparse']),
                            expected, out],
                           env=ENV, capture_output=True)
        if c.returncode == 2:
            raise GeneratorProblem(f'compare-tree.py: {c.stderr.decode(errors="replace").strip()}')
        if c.returncode != 0:
            lines = [l for l in c.stdout.decode('utf-8', 'replace').splitlines()
                     if l and not l.startswith('compare-tree: ')]
            for line in lines[:MAX_LINES_PER_CHECK]:
                self.fail(f'{label} extracted: {line}')
            if len(lines) > MAX_LINES_PER_CHECK:
                self.fail(f'{label} extracted: {len(lines) - MAX_LINES_PER_CHECK} more differences')


# ---------------------------------------------------------------------------
# Mode journal

JOURNAL_LAYOUTS = [
    ('ext4', ['-t', 'ext4']),
    ('ext4 ^64bit', ['-t', 'ext4', '-O', '^64bit']),
    ('ext4 ^metadata_csum', ['-t', 'ext4', '-O', '^metadata_csum']),
    ('ext4 ^64bit,^metadata_csum', ['-t', 'ext4', '-O', '^64bit,^metadata_csum']),
    ('ext4 ^resize_inode', ['-t', 'ext4', '-O', '^resize_inode']),
    ('ext3', ['-t', 'ext3']),
]


class Changes:
    """Random changes made twice: at once to the expected tree on the host, and as the lines
    of a debugfs -w script for the image. Every new or changed entry gets an explicit mode and
    mtime on both sides (debugfs would stamp the current time)."""

    def __init__(self, case, expected, block, symlink_max, large_inodes, block_mapped):
        self.case, self.rng, self.expected = case, case.rng, expected
        self.large_inodes, self.block_mapped = large_inodes, block_mapped
        self.block, self.symlink_max = block, symlink_max
        self.lines = []
        self.stage_count = 0
        self.htree_dirs = []
        self.root_changed = False
        os.makedirs(case.path('stage'), exist_ok=True)

    def host(self, rel):
        return os.path.join(self.expected, rel) if rel else self.expected

    def entries(self):
        return walk_tree(self.expected)

    def dirs(self):
        return [''] + [r for r, st in self.entries().items() if stat.S_ISDIR(st.st_mode)]

    def new_name(self, parent, long_ok=True):
        return random_name(self.rng, set(os.listdir(self.host(parent))), long_ok)

    def note(self, text, *parents):
        self.case.log(text)
        if '' in parents:
            self.root_changed = True

    def stage(self, content):
        """debugfs reads the file when the script runs, after later changes may have replaced
        the host copy, so each write gets its own staged file."""
        self.stage_count += 1
        path = self.case.path(f'stage/{self.stage_count}')
        content.write(path)
        return path

    def write_file(self, rel, content, mode, mtime):
        parent, name = parent_of(rel), rel.rpartition('/')[2]
        staged = self.stage(content)
        content.write(self.host(rel))
        os.chmod(self.host(rel), mode)
        os.utime(self.host(rel), (0, mtime))
        self.lines += [f'cd {dpath(parent)}', f'write {quoted(staged)} {quoted(name)}', 'cd /',
                       f'sif {dpath(rel)} mode 0{0o100000 | mode:o}', *sif_mtime(rel, mtime, self.large_inodes)]

    def content_for(self, kinds, budget=600000):
        return random_content(self.rng, self.rng.choice(kinds), max(4096, self.block), budget)

    # --- the changes -------------------------------------------------------

    def new_file(self, parent):
        rel = join(parent, self.new_name(parent))
        content = self.content_for(CONTENT_KINDS)
        self.write_file(rel, content, self.rng.choice(FILE_MODES), random_mtime(self.rng))
        self.note(f'new file /{rel} ({content.size} bytes)', parent)

    def remove(self):
        victims = [r for r, st in self.entries().items() if not stat.S_ISDIR(st.st_mode)]
        if not victims:
            return self.new_file('')
        rel = self.rng.choice(victims)
        os.unlink(self.host(rel))
        self.lines.append(f'rm {dpath(rel)}')
        self.note(f'rm /{rel}', parent_of(rel))

    def rename(self):
        entries = self.entries()
        if not entries:
            return self.new_file('')
        rel = self.rng.choice(list(entries))
        if stat.S_ISDIR(entries[rel].st_mode):
            new_parent = parent_of(rel)                # '..' stays right only within the parent
        else:
            new_parent = self.rng.choice(self.dirs())
        new = join(new_parent, self.new_name(new_parent))
        os.rename(self.host(rel), self.host(new))
        self.lines += [*link_lines(rel, new), f'unlink {dpath(rel)}']
        self.note(f'rename /{rel} -> /{new}', parent_of(rel), new_parent)

    def recreate_bigger(self):
        candidates = [r for r, st in self.entries().items() if stat.S_ISREG(st.st_mode) and st.st_nlink == 1]
        if not candidates:
            return self.new_file('')
        rel = self.rng.choice(candidates)
        st = os.lstat(self.host(rel))
        os.unlink(self.host(rel))
        self.lines.append(f'rm {dpath(rel)}')
        size = max(2 * st.st_size, 64 * 1024) + self.rng.randint(0, 256 * 1024)
        # one long run, or runs with holes: either way more extents than before
        if self.rng.random() < 0.5:
            content = Content(size, [(0, self.rng.randbytes(size))])
        else:
            align = max(4096, self.block)
            runs, pos = [], 0
            while pos < size:
                length = min(size - pos, align * self.rng.randint(1, 16))
                runs.append((pos, self.rng.randbytes(length)))
                pos += length + align * self.rng.randint(1, 4)
            content = Content(max(size, runs[-1][0] + len(runs[-1][1])), runs)
        self.write_file(rel, content, stat.S_IMODE(st.st_mode), random_mtime(self.rng))
        self.note(f're-create /{rel} bigger ({st.st_size} -> {content.size} bytes)', parent_of(rel))

    def make_dir(self, parent):
        rel = join(parent, self.new_name(parent))
        mode = self.rng.choice(DIR_MODES)
        os.mkdir(self.host(rel))
        self.lines += [f'mkdir {dpath(rel)}', f'sif {dpath(rel)} mode 0{0o040000 | mode:o}']
        os.chmod(self.host(rel), mode)
        self.note(f'mkdir /{rel}', parent)
        for _ in range(self.rng.randint(0, 3)):
            self.new_file(rel)

    def symlink(self, parent):
        rel = join(parent, self.new_name(parent))
        target = random_symlink_target(self.rng, self.symlink_max)
        os.symlink(target, self.host(rel))
        mtime = random_mtime(self.rng)
        os.utime(self.host(rel), (0, mtime), follow_symlinks=False)
        self.lines += [f'symlink {dpath(rel)} {quoted(target)}', *sif_mtime(rel, mtime, self.large_inodes)]
        self.note(f'symlink /{rel} ({len(target.encode())} bytes)', parent)

    def hard_link(self):
        files = [r for r, st in self.entries().items() if stat.S_ISREG(st.st_mode)]
        if not files:
            return self.new_file('')
        rel = self.rng.choice(files)
        parent = self.rng.choice([parent_of(rel), self.rng.choice(self.dirs())])
        new = join(parent, self.new_name(parent))
        os.link(self.host(rel), self.host(new))
        # debugfs ln leaves the link count alone
        self.lines += [*link_lines(rel, new),
                       f'sif {dpath(new)} links_count {os.lstat(self.host(new)).st_nlink}']
        self.note(f'hard link /{new} -> /{rel}', parent)

    def punch(self):
        files = [(r, st) for r, st in self.entries().items()
                 if stat.S_ISREG(st.st_mode) and st.st_size >= 3 * self.block]
        if not files:
            return self.new_file('')
        rel, st = self.rng.choice(files)
        nblocks = (st.st_size + self.block - 1) // self.block
        # debugfs 1.47.0 punch inside an indirect block's span of a block-mapped file frees
        # what it likes (661-680 freed 661-779 on 1 KiB blocks, 661-779 freed nothing): there,
        # only direct blocks are punched.
        mapped = min(nblocks, 12) if self.block_mapped else nblocks
        first = self.rng.randrange(mapped)
        last = min(mapped - 1, first + self.rng.randint(0, 40))
        start, end = first * self.block, min((last + 1) * self.block, st.st_size)
        with open(self.host(rel), 'r+b') as f:
            if not punch_hole(f.fileno(), start, end - start):
                f.seek(start)
                f.write(bytes(end - start))
        mtime = random_mtime(self.rng)
        os.utime(self.host(rel), (0, mtime))
        self.lines.append(f'punch {dpath(rel)} {first} {last}')
        self.lines += sif_mtime(rel, mtime, self.large_inodes)
        self.note(f'punch /{rel} blocks {first}-{last}')

    def remove_empty_dir(self):
        empty = [r for r, st in self.entries().items()
                 if stat.S_ISDIR(st.st_mode) and not os.listdir(self.host(r))]
        if not empty:
            return self.make_dir('')
        rel = self.rng.choice(empty)
        os.rmdir(self.host(rel))
        self.lines.append(f'rmdir {dpath(rel)}')
        self.note(f'rmdir /{rel}', parent_of(rel))

    def many_files(self, parent):
        """Enough entries for several directory blocks; e2fsck -fyD then indexes the directory."""
        rel = join(parent, self.new_name(parent, long_ok=False))
        os.mkdir(self.host(rel))
        self.lines.append(f'mkdir {dpath(rel)}')
        per_block = self.block // 28
        count = self.rng.randint(int(2.5 * per_block), 5 * per_block)
        empty = self.case.path('stage/empty')
        Content(0, []).write(empty)
        for i in range(count):
            name = f'entry-{i:05d}-' + ''.join(self.rng.choice('abcdefghijklmnop') for _ in range(self.rng.randint(4, 30)))
            mtime = random_mtime(self.rng)
            if self.rng.random() < 0.05:
                content = self.content_for(['tiny', 'small'])
                self.write_file(join(rel, name), content, 0o644, mtime)
                continue
            open(self.host(join(rel, name)), 'wb').close()
            os.chmod(self.host(join(rel, name)), 0o644)
            os.utime(self.host(join(rel, name)), (0, mtime))
            self.lines += [f'cd {dpath(rel)}', f'write {quoted(empty)} {quoted(name)}', 'cd /',
                           f'sif {dpath(join(rel, name))} mode 0100644',
                           *sif_mtime(join(rel, name), mtime, self.large_inodes)]
        self.htree_dirs.append(rel)
        self.note(f'mkdir /{rel} with {count} files (htree)', parent)

    def random_change(self, root_bias=0.3):
        dirs = self.dirs()
        parent = '' if self.rng.random() < root_bias else self.rng.choice(dirs)
        op = self.rng.choice(['new', 'new', 'new', 'rm', 'rename', 'bigger', 'bigger', 'mkdir', 'symlink',
                              'link', 'punch', 'rmdir'])
        {'new': lambda: self.new_file(parent), 'rm': self.remove, 'rename': self.rename,
         'bigger': self.recreate_bigger, 'mkdir': lambda: self.make_dir(parent),
         'symlink': lambda: self.symlink(parent), 'link': self.hard_link, 'punch': self.punch,
         'rmdir': self.remove_empty_dir}[op]()

    def set_dir_mtimes(self):
        """Every directory gets an explicit mtime at the end (those that changed, and those
        renamed after they changed, must match; the rest just get a new date)."""
        for rel in sorted(self.dirs(), key=lambda d: -d.count('/')):
            mtime = random_mtime(self.rng)
            os.utime(self.host(rel), (0, mtime))
            self.lines += sif_mtime(rel, mtime, self.large_inodes)

    def apply(self, image, name):
        self.set_dir_mtimes()
        run_debugfs_script(image, self.lines, self.case.scratch, name)
        self.lines = []


_libc = None


def punch_hole(fd, offset, length):
    """fallocate(PUNCH_HOLE|KEEP_SIZE) so the expected tree keeps the hole; False if unsupported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
        return _libc.fallocate(fd, 3, offset, length) == 0
    except (OSError, AttributeError):
        return False


def differing_blocks(path_a, path_b, block, skip):
    """Blocks of B that differ from A (A read as zeros past its end), minus skip."""
    out = []
    chunk = block * max(1, (1 << 20) // block)
    size_b = os.path.getsize(path_b)
    with open(path_a, 'rb') as fa, open(path_b, 'rb') as fb:
        pos = 0
        while pos < size_b:
            fa.seek(pos)
            fb.seek(pos)
            b = fb.read(chunk)
            a = fa.read(len(b))
            a += bytes(len(b) - len(a))
            if a != b:
                for i in range(0, len(b), block):
                    if a[i:i + block] != b[i:i + block]:
                        n = (pos + i) // block
                        if n not in skip:
                            out.append(n)
            pos += len(b)
    return out


def read_block(path, n, block):
    with open(path, 'rb') as f:
        f.seek(n * block)
        data = f.read(block)
    return data + bytes(block - len(data))


_CRC32C = []


def crc32c_raw(data, crc=0xFFFFFFFF):
    """CRC32C without the final inversion: what ext4 stores as s_checksum."""
    if not _CRC32C:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC32C.append(c)
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def with_needs_recovery(sb):
    """A superblock (1024 bytes) with needs_recovery set and its checksum redone."""
    sb = bytearray(sb)
    incompat = int.from_bytes(sb[0x60:0x64], 'little') | 0x4
    sb[0x60:0x64] = incompat.to_bytes(4, 'little')
    if int.from_bytes(sb[0x64:0x68], 'little') & 0x400:          # metadata_csum
        sb[0x3FC:0x400] = crc32c_raw(bytes(sb[:0x3FC])).to_bytes(4, 'little')
    return bytes(sb)


class Transaction:
    def __init__(self, commit=True):
        self.writes = []          # (block, source): source 'B' (the right version), 'A' (old), 'garbage'
        self.revokes = []
        self.commit = commit


def plan_transactions(rng, journaled, direct, unchanged_meta, per_tx, log):
    """Transactions that, replayed as jbd2 does, leave each journaled block with B's
    version and do not replay anything over the direct and unchanged blocks."""
    txs = []
    correct = list(journaled)
    rng.shuffle(correct)
    superseded = rng.sample(correct, min(len(correct), rng.randint(1, 3))) if rng.random() < 0.4 else []
    pool = sorted(set(direct) | set(unchanged_meta) | (set(correct) - set(superseded)))
    revoked = rng.sample(pool, min(len(pool), rng.randint(1, 3))) if pool and rng.random() < 0.4 else []
    late = set(superseded) | set(revoked)
    early_ok = [b for b in correct if b not in late]
    if superseded or revoked:
        # an early transaction: bogus versions (old bytes or garbage), with some right blocks
        tx = Transaction()
        for b in superseded + revoked:
            tx.writes.append((b, rng.choice(['A', 'garbage'])))
        room = max(0, per_tx - len(tx.writes))
        for b in early_ok[:rng.randint(0, room)]:
            tx.writes.append((b, 'B'))
        txs.append(tx)
        log(f'early transaction: {len(superseded)} superseded, {len(revoked)} to be revoked, '
            f'{len(tx.writes) - len(superseded) - len(revoked)} right blocks')
    if revoked:
        tx = Transaction()
        tx.revokes = list(revoked)
        txs.append(tx)
        log(f'revoke transaction: {revoked}')
    done = {b for tx in txs for b, src in tx.writes if src == 'B'}
    rest = [b for b in correct if b not in done]
    parts = max(1, min(rng.randint(1, 3), len(rest)))
    size = max(1, -(-len(rest) // parts))
    for i in range(0, len(rest), size):
        for j in range(i, min(i + size, len(rest)), per_tx):
            tx = Transaction()
            tx.writes = [(b, 'B') for b in rest[j:min(j + per_tx, i + size, len(rest))]]
            txs.append(tx)
    if rng.random() < 0.4:
        tx = Transaction(commit=False)
        victims = sorted(set(correct) | set(direct) | set(unchanged_meta))
        tx.writes = [(b, 'garbage') for b in rng.sample(victims, min(len(victims), rng.randint(1, per_tx)))]
        txs.append(tx)
        log(f'uncommitted transaction: {len(tx.writes)} garbage blocks')
    # what jbd2 recovery makes of it: revoke records apply to their own and older transactions
    revoked_until = {}
    committed = [tx for tx in txs if tx.commit]
    for tid, tx in enumerate(committed):
        for b in tx.revokes:
            revoked_until[b] = tid
    final = {}
    for tid, tx in enumerate(committed):
        for b, src in tx.writes:
            if revoked_until.get(b, -1) < tid:
                final[b] = src
    wrong = [b for b in journaled if final.get(b) != 'B'] + [b for b in final if b not in set(journaled)]
    if wrong:
        raise GeneratorProblem(f'transaction plan leaves blocks {wrong[:8]} wrong')
    return txs


def run_journal(case):
    rng = case.rng
    name, args = rng.choice(JOURNAL_LAYOUTS)
    block = rng.choice([1024, 4096])
    inode = rng.choice([128, 256])
    size_mb = rng.randint(24, 64) if block == 1024 else rng.randint(32, 96)
    case.log(f'layout {name}, {block}-byte blocks, {inode}-byte inodes, {size_mb} MiB')
    tree = case.path('tree')
    build_tree(rng, tree, TreeSpec(block, budget=size_mb * (1 << 20) // 4, files=(10, 35)))
    img_a = case.path('A.img')
    refused = case.mke2fs(img_a, size_mb << 20, args + ['-b', block, '-I', inode], tree)
    if refused:
        raise GeneratorProblem(f'mke2fs refused {name} -b {block} -I {inode}: {refused}')
    require_fsck_clean(img_a, 'A')

    # B: A after the changes; expected: the tree after the same changes
    expected = case.path('expected')
    run(['cp', '-a', tree, expected])
    img_b = case.path('B.img')
    copy_sparse(img_a, img_b)
    changes = Changes(case, expected, block, min(4095, block - 1), inode > 128, name == 'ext3')
    if rng.random() < 0.65:
        # a change in / itself: its inode sits in the first inode-table block
        rng.choice([lambda: changes.new_file(''), lambda: changes.symlink(''), lambda: changes.make_dir('')])()
    for _ in range(rng.randint(2, 9)):
        changes.random_change()
    case.log(f'/ itself changed: {"yes" if changes.root_changed else "no"}')
    htree = rng.random() < 0.3
    if htree:
        changes.many_files(rng.choice(changes.dirs()))
    changes.apply(img_b, 'changes')
    if htree:
        fsck_fix(img_b, 'B', ['-D'])
        for d in changes.htree_dirs:
            if 'Number of entries' not in debugfs_read(img_b, f'htree {dpath(d)}'):
                raise GeneratorProblem(f'/{d} is not indexed after e2fsck -fyD')
        for _ in range(rng.randint(0, 2)):
            changes.new_file(rng.choice(changes.htree_dirs))
        changes.apply(img_b, 'after-htree')
    grown = rng.random() < 0.35
    if grown:
        fsck_fix(img_b, 'B')                                   # resize2fs insists on a checked fs
        new_size = (size_mb + rng.randint(8, size_mb)) << 20
        os.truncate(img_b, new_size)
        run(['resize2fs', img_b])
        case.log(f'grown to {new_size >> 20} MiB with resize2fs')
        for _ in range(rng.randint(1, 3)):
            changes.random_change(root_bias=0.5)
        changes.apply(img_b, 'after-grow')
    fsck_fix(img_b, 'B')
    require_fsck_clean(img_b, 'B')
    require_image_holds_tree(img_b, expected, case.scratch, 'B')

    # the blocks the crash leaves half-written
    jblocks = journal_blocks(img_a)
    if journal_blocks(img_b) != jblocks:
        raise GeneratorProblem('the journal moved between A and B')
    diff = differing_blocks(img_a, img_b, block, jblocks)
    meta_b, supers_b = group_layout(img_b)
    journal_len = int(superblock_fields(img_a).get('Total journal blocks', '0') or 0)
    if not diff:
        raise GeneratorProblem('B does not differ from A')
    p_meta = rng.choice([0.8, 1.0, 1.0])
    p_other = rng.choice([0.0, 0.3, 0.7, 1.0])
    journaled, direct = [], []
    for b in diff:
        (journaled if rng.random() < (p_meta if b in meta_b else p_other) else direct).append(b)
    together = set()
    if grown:
        # The primary superblock and descriptors go to disk together (both in place or both
        # journaled): a superblock with the new block count over the old descriptors is
        # refused by the kernel before it looks at the journal (and e2fsck falls back to the
        # backups), so a crash that leaves it is not what this case is about.
        m = re.search(r'Primary superblock at (\d+), Group descriptors at (\d+)-(\d+)', run(['dumpe2fs', img_b]).out)
        together = ({int(m.group(1))} | set(range(int(m.group(2)), int(m.group(3)) + 1))) & set(diff)
        keep_in, move_from = (journaled, direct) if rng.random() < 0.75 else (direct, journaled)
        for b in together:
            if b in move_from:
                move_from.remove(b)
                keep_in.append(b)
        case.log(f'superblock and descriptors {sorted(together)} {"journaled" if keep_in is journaled else "in place"}')
    if not journaled:
        journaled.append(direct.pop(rng.randrange(len(direct))))
    # Few enough blocks for one descriptor block per transaction: debugfs sizes a transaction
    # with a guess that comes out a block short when the tags spill into a second one.
    per_tx = (block - 32) // 16 - 2
    budget = journal_len - 3 * per_tx - 16
    while len(journaled) + 2 * (len(journaled) // per_tx + 4) > budget and len(journaled) > 1:
        others = [b for b in journaled if b not in meta_b and b not in together] or journaled
        b = rng.choice(others)
        journaled.remove(b)
        direct.append(b)
    journaled.sort()
    direct.sort()
    case.log(f'{len(diff)} blocks differ: {len(journaled)} journaled, {len(direct)} written in place; '
             f'journal {journal_len} blocks')
    in_fs = [b for b in sorted(meta_b) if b not in set(diff) and b not in jblocks]
    unchanged_meta = rng.sample(in_fs, min(len(in_fs), 4))
    txs = plan_transactions(rng, journaled, direct, unchanged_meta, per_tx, case.log)

    # The transactions are written by debugfs into a scratch copy of B, and the journal's blocks
    # (the same blocks in A and B) copied from there into A'. debugfs refuses to journal a
    # block at or past the block count of the superblock it opened (journal_write: Illegal
    # block number), and after a grow A's superblock still has the old count -- as the
    # on-disk superblock of a VM that crashed after an online resize does.
    img_w = case.path('journal-writer.img')
    copy_sparse(img_b, img_w)
    if 'metadata_csum' in superblock_fields(img_a)['Filesystem features']:
        lines = [rng.choice(['jo', 'jo -c', 'jo -c -v 2'])]          # no checksums, csum v3, v2
    elif any(tx.revokes for tx in txs):
        # Without metadata_csum, jo -c means the old commit-block CRC32 (compat checksum), and
        # debugfs 1.47.0 counts revoke blocks into it, which the kernel and e2fsck do not:
        # e2fsck calls such a transaction corrupt and stops replaying there.
        lines = ['jo']
    else:
        lines = [rng.choice(['jo', 'jo -c'])]
    for i, tx in enumerate(txs):
        if tx.writes:
            data_path = case.path(f'tx{i}.blocks')
            with open(data_path, 'wb') as f:
                for b, src in tx.writes:
                    f.write(read_block(img_b, b, block) if src == 'B' else
                            read_block(img_a, b, block) if src == 'A' else rng.randbytes(block))
            # debugfs mis-sizes a transaction that has both blocks and revokes (its guess
            # leaves out the revoke block, and the next transaction overwrites the commit), so
            # revokes always travel alone.
            lines.append(f'jw -b {",".join(str(b) for b, _ in tx.writes)}{"" if tx.commit else " -c"} '
                         f'{quoted(data_path)}')
        else:
            lines.append(f'jw -r {",".join(str(b) for b in tx.revokes)}')
    lines.append('jc')
    case.log(f'{lines[0]}; {sum(tx.commit for tx in txs)} committed transactions, '
             f'{sum(not tx.commit for tx in txs)} uncommitted')
    run_debugfs_script(img_w, lines, case.scratch, 'journal')
    commits = len(re.findall(r'type 2 \(commit block\)', debugfs_read(img_w, 'logdump')))
    if commits != sum(tx.commit for tx in txs):
        raise GeneratorProblem(f'logdump shows {commits} commit blocks, {sum(tx.commit for tx in txs)} written')

    # A': A, grown to B's size if B grew, with the journal from above, the direct blocks of B,
    # and needs_recovery set in the primary superblock.
    img_a2 = case.path('A-crashed.img')
    copy_sparse(img_a, img_a2)
    size_b = os.path.getsize(img_b)
    if size_b > os.path.getsize(img_a2):
        os.truncate(img_a2, size_b)
    primary_sb = 1024 // block                       # block 1 with 1 KiB blocks, else 0
    with open(img_a2, 'r+b') as f:
        for b in sorted(jblocks):
            f.seek(b * block)
            f.write(read_block(img_w, b, block))
        for b in direct:
            f.seek(b * block)
            f.write(read_block(img_b, b, block))
        f.seek(1024)
        sb = f.read(1024)
        f.seek(1024)
        f.write(with_needs_recovery(sb))
    os.unlink(img_w)
    if 'needs_recovery' not in superblock_fields(img_a2).get('Filesystem features', ''):
        raise GeneratorProblem("A' lost needs_recovery")

    # check a: e2fsck replays a copy and finds it clean
    img_c = case.path('C.img')
    copy_sparse(img_a2, img_c)
    fsck_fix(img_c, "C (A' replayed by e2fsck)")
    require_fsck_clean(img_c, 'C after e2fsck -fy')
    left = [b for b in differing_blocks(img_b, img_c, block, jblocks | supers_b)]
    if left:
        raise GeneratorProblem(f"after e2fsck's replay C differs from B in blocks {left[:10]}"
                               + (f' (+{len(left) - 10})' if len(left) > 10 else ''))
    # checks b-d
    case.qbfs_extract(img_a2, "A' (needs recovery)", expected, 'out-crashed')
    case.qbfs_extract(img_c, 'C (replayed by e2fsck)', expected, 'out-replayed')


# ---------------------------------------------------------------------------
# Mode layout

def pick_plain_layout(rng):
    fstype = rng.choice(['ext2', 'ext3', 'ext4', 'ext4', 'ext4'])
    block = rng.choice([1024, 2048, 4096, 4096, 65536])
    inode = rng.choice([128, 256, 256])
    features, args, extended = [], [], []
    cluster = None
    if fstype == 'ext4':
        if rng.random() < 0.3:
            features.append('^64bit')
            if rng.random() < 0.2:
                features.append('^extent')
        if rng.random() < 0.3:
            features.append('^metadata_csum')
        if rng.random() < 0.25:
            features.append('^flex_bg')
        if rng.random() < 0.2:
            features.append('^huge_file')
        if rng.random() < 0.3 and '^extent' not in features:
            choices = [c for c in (16384, 65536, 262144) if c > block]
            if choices:
                cluster = rng.choice(choices)
                features.append('bigalloc')
                args += ['-C', cluster]
        if rng.random() < 0.25 and inode >= 256:
            features.append('inline_data')
        if rng.random() < 0.1:
            features.append('^has_journal')
    else:
        if rng.random() < 0.2:
            features.append('metadata_csum')
        if rng.random() < 0.2:
            features.append('flex_bg')
        if rng.random() < 0.3:
            features.append('huge_file')
    r = rng.random()
    if r < 0.2:
        features += ['meta_bg', '^resize_inode']
    elif r < 0.35:
        features.append('^resize_inode')
    if rng.random() < 0.2:
        features.append('sparse_super2')
        if rng.random() < 0.5:
            extended.append(f'num_backup_sb={rng.choice([0, 1, 2])}')
    if rng.random() < 0.2:
        features.append('^filetype')
    if rng.random() < 0.2:
        features.append('large_dir')
    if block <= 4096 and rng.random() < 0.25:
        args += ['-g', rng.choice([block * 8 // 8, block * 8 // 4, block * 8 // 2])]   # more, smaller groups
    size_mb = rng.randint(16, 128) if block < 65536 else rng.randint(32, 128)
    return {'type': fstype, 'block': block, 'inode': inode, 'cluster': cluster, 'features': features,
            'args': args, 'extended': extended, 'size_mb': size_mb}


def layout_args(lay):
    args = ['-t', lay['type'], '-b', lay['block'], '-I', lay['inode']] + lay['args']
    if lay['features']:
        args += ['-O', ','.join(lay['features'])]
    return args


def describe(lay):
    words = [lay['type'], '-b', lay['block'], '-I', lay['inode'], *lay['args']]
    if lay['features']:
        words += ['-O', ','.join(lay['features'])]
    if lay['extended']:
        words += ['-E', ','.join(lay['extended'])]
    return '[' + ' '.join(map(str, words)) + f" {lay['size_mb']}M]"


def fixups_after_populate(case, image, tree, lay):
    """Things mke2fs -d cannot record, made with debugfs on image and tree alike."""
    rng = case.rng
    lines = []
    if lay['inode'] >= 256 and rng.random() < 0.6:
        # dates past 2038 need the epoch bits of i_mtime_extra, which mke2fs -d does not set
        candidates = [r for r, st in walk_tree(tree).items() if not stat.S_ISDIR(st.st_mode)]
        for rel in rng.sample(candidates, min(len(candidates), rng.randint(1, 3))):
            # Not in [3*2^32 - 2^31, 3*2^32): epoch bits 3 with the sign bit set is how old
            # kernels wrote dates before 1970, and e2fsck rewrites those as such.
            mtime = rng.choice([2 ** 31, 2 ** 32 + 12345, rng.randint(2 ** 31, 3 * 2 ** 32 - 2 ** 31 - 1),
                                rng.randint(3 * 2 ** 32, 2 ** 34 - 2 ** 31 - 1), 2 ** 34 - 2 ** 31 - 1])
            os.utime(os.path.join(tree, rel), (0, mtime), follow_symlinks=False)
            lines += sif_mtime(rel, mtime, True)
            case.log(f'mtime of /{rel} set to {mtime}')
    if lines:
        run_debugfs_script(image, lines, case.scratch, 'fixups')


def run_layout_plain(case):
    rng = case.rng
    probe = case.path('probe.img')
    for attempt in range(100):
        lay = pick_plain_layout(rng)
        refused = case.mke2fs(probe, lay['size_mb'] << 20, layout_args(lay), extended=lay['extended'])
        if not refused:
            break
        case.log(f'mke2fs refuses {describe(lay)}: {refused[0]}; picking again')
    else:
        raise GeneratorProblem('no layout mke2fs accepts in 100 tries')
    os.unlink(probe)
    case.log(f'layout {describe(lay)}')
    block = lay['block']
    unit = lay['cluster'] or block
    extents = lay['type'] == 'ext4' and '^extent' not in lay['features']
    spec = TreeSpec(block, unit=unit, budget=lay['size_mb'] * (1 << 20) * 2 // 5,
                    fragmented=extents and block <= 4096, trailing_holes='inline_data' not in lay['features'],
                    # not with bigalloc: mke2fs -d gives each block of a growing directory a
                    # cluster of its own, and runs out of space
                    big_dir=(rng.random() < 0.3 if block <= 4096 else False) and not lay['cluster'])
    if spec.fragmented:
        frag_cost = (4 * ((block - 12) // 12) + 200) * 2 * block
        if lay['cluster']:
            frag_cost = (4 * ((block - 12) // 12) + 200) * 2 * block + lay['cluster'] * 4
        need_mb = (frag_cost * 3) >> 20
        if lay['size_mb'] < need_mb + 16:
            lay['size_mb'] = need_mb + 16
            case.log(f'grown to {lay["size_mb"]} MiB for the fragmented file')
        spec.budget = max(1 << 20, lay['size_mb'] * (1 << 20) * 2 // 5 - frag_cost)
    tree = case.path('tree')
    notes = build_tree(rng, tree, spec)
    image = case.path('layout.img')
    refused = case.mke2fs(image, lay['size_mb'] << 20, layout_args(lay), tree, lay['extended'])
    if refused:
        raise GeneratorProblem(f'mke2fs -d refused {describe(lay)}: {refused}')
    fixups_after_populate(case, image, tree, lay)
    if notes['big_dir']:
        # mke2fs -d writes linear directories; e2fsck -D indexes those of more than one block
        fsck_fix(image, 'e2fsck -fyD', ['-D'])
        indexed = 'Number of entries' in debugfs_read(image, f'htree {dpath(notes["big_dir"])}')
        case.log(f'/{notes["big_dir"]}: {len(os.listdir(os.path.join(tree, notes["big_dir"])))} entries, '
                 f'{"indexed" if indexed else "not indexed"} after e2fsck -fyD')
    if '^filetype' not in lay['features'] and rng.random() < 0.15:
        # clearing filetype on an existing fs: tune2fs, then e2fsck rewrites every entry
        run(['tune2fs', '-O', '^filetype', image])
        fsck_fix(image, 'after tune2fs -O ^filetype')
        case.log('tune2fs -O ^filetype; e2fsck -fy')
    if notes['fragmented']:
        depth = extent_depth(image, notes['fragmented'])
        if depth < 2:
            raise GeneratorProblem(f'/{notes["fragmented"]} has an extent tree of depth {depth}, not >= 2')
        case.log(f'/{notes["fragmented"]}: extent tree depth {depth}')
    require_fsck_clean(image, 'the image')
    require_image_holds_tree(image, tree, case.scratch, 'the image')
    # mke2fs -d 1.47.0 with inline_data writes some files' holes as blocks of zeros (a 4 KiB
    # hole before 8 KiB of data comes out mapped): the image then has no hole to keep.
    case.qbfs_extract(image, describe(lay).strip(), tree, 'out', holes='inline_data' not in lay['features'])


def free_ranges_before(image, first_group):
    """[(first, count)] of the free blocks and of the free inodes in groups before first_group,
    from dumpe2fs's per-group 'Free blocks:' and 'Free inodes:' lines, and {group: flags} of
    those groups with INODE_UNINIT or BLOCK_UNINIT, the flags being what is left without them."""
    blocks, inodes, uninit, group = [], [], {}, None
    for line in run(['dumpe2fs', image]).out.splitlines():
        m = re.match(r'Group (\d+):.*?(?:\[(.*)\])?$', line)
        if m:
            group = int(m.group(1))
            flags = m.group(2) or ''
            if group < first_group and 'UNINIT' in flags.replace('ITABLE_ZEROED', ''):
                uninit[group] = 4 if 'ITABLE_ZEROED' in flags else 0
            continue
        m = re.match(r'\s+Free (blocks|inodes): (.*)', line)
        if m and group is not None and group < first_group:
            for part in filter(None, (p.strip() for p in m.group(2).split(','))):
                first, _, last = part.partition('-')
                (blocks if m.group(1) == 'blocks' else inodes).append((int(first), int(last or first) - int(first) + 1))
    return blocks, inodes, uninit


def fill_groups_before(case, image, first_group):
    """Marks every free block and inode of the groups before first_group in use (debugfs setb,
    seti), so that what debugfs writes next lands in first_group or later: libext2fs takes new
    inodes from the parent's group on, and blocks from the first free one on. Returns the
    debugfs lines that free them again."""
    blocks, inodes, uninit = free_ranges_before(image, first_group)
    # setb and seti change only the bitmaps, and libext2fs does not write the bitmaps of a group
    # flagged uninitialised: the flags go first (debugfs holds the real bitmaps in memory).
    lines = [f'set_bg {g} flags {flags}' for g, flags in sorted(uninit.items())]
    lines += [f'setb {b} {n}' for b, n in blocks] + [f'seti <{i}> {n}' for i, n in inodes]
    run_debugfs_script(image, lines, case.scratch, 'fill')
    case.log(f'groups 0..{first_group - 1} marked full: {sum(n for _, n in blocks)} blocks, '
             f'{sum(n for _, n in inodes)} inodes')
    return [f'freeb {b} {n}' for b, n in blocks] + [f'freei <{i}> {n}' for i, n in inodes]


def require_placed_in(case, image, tree, prefix, first_group):
    """The biggest file written after the fillers must have its inode and its first block in
    first_group or later: else the case does not test what it claims."""
    fields = superblock_fields(image)
    ipg, bpg = int(fields['Inodes per group']), int(fields['Blocks per group'])
    first_block = int(fields['First block'])
    files = [(st.st_size, rel) for rel, st in walk_tree(tree).items() if stat.S_ISREG(st.st_mode) and st.st_size > 8192]
    if not files:
        return
    rel = join(prefix, max(files)[1])
    ino = int(re.search(r'Inode: (\d+)', debugfs_read(image, f'stat {dpath(rel)}')).group(1))
    blocks = [int(w) for w in debugfs_read(image, f'blocks {dpath(rel)}').split()]
    group_of_inode = (ino - 1) // ipg
    group_of_block = (blocks[0] - first_block) // bpg if blocks else -1
    case.log(f'/{rel}: inode {ino} in group {group_of_inode}, first block {blocks[:1]} in group {group_of_block}')
    if group_of_inode < first_group or group_of_block < first_group:
        raise GeneratorProblem(f'/{rel} is in groups {group_of_inode}/{group_of_block}, not >= {first_group}')


def run_layout_meta_bg(case, grown):
    """meta_bg, with files in the last meta group: their inodes and blocks are found through
    descriptors that sit in that meta group. grown: s_first_meta_bg = 1, as the kernel leaves
    it when an online resize runs out of reserved GDT blocks (made here with debugfs, then
    resize2fs); otherwise mke2fs -O meta_bg. Often with sparse_super2 (backup superblocks only
    in the groups s_backup_bgs names). 1 KiB blocks and small groups keep it small; sometimes
    8192-block groups, ~260-280 MiB."""
    rng = case.rng
    block = 1024
    bit64 = rng.random() < 0.4
    per_mg = block // (64 if bit64 else 32)                # groups per meta group
    bpg = 8192 if not grown and rng.random() < 0.35 else rng.choice([1024, 2048])
    features = ['^resize_inode'] + ([] if bit64 else ['^64bit'])
    if rng.random() < 0.6:
        features.append('sparse_super2')
    if rng.random() < 0.3:
        features.append('^metadata_csum')
    if rng.random() < 0.2:
        features.append('^flex_bg')
    if not grown:
        features.append('meta_bg')
    group_bytes = bpg * block
    # A last meta group of one group puts sparse_super2's last backup (s_backup_bgs[1], the
    # last group) in the first group of a meta group, before its descriptor block.
    if bpg == 8192:
        last_groups = rng.choice([1, 1, 2, 3])
        groups = per_mg + last_groups
    elif bpg == 2048 and rng.random() < 0.4:
        last_groups = 1
        groups = per_mg * (rng.randint(1, 2) if bit64 else 1) + last_groups
    else:
        last_groups = rng.randint(max(2, -(-(3 << 20) // group_bytes)), per_mg)
        groups = per_mg * (rng.randint(1, 2) if bit64 else 1) + last_groups
    first_late = groups - last_groups                      # first group of the last meta group
    # inodes: about 70 entries go in the last meta group
    ipg = max(16, -(-70 // last_groups + 7) // 8 * 8)
    args = ['-t', 'ext4', '-b', block, '-g', bpg, '-N', groups * ipg, '-O', ','.join(features)]
    image = case.path('layout.img')
    tree = case.path('tree')
    size = groups * group_bytes + block                    # group 0 starts at block 1
    what = f'ext4 {" ".join(map(str, args[2:]))}; {groups} groups of {bpg} blocks'
    if grown:
        first_groups = per_mg                              # exactly one descriptor block
        case.log(f'meta_bg by growth: {what}, from {first_groups} groups')
        build_tree(rng, tree, TreeSpec(block, budget=first_groups * group_bytes // 4, files=(6, 20), dirs=(2, 5)))
        refused = case.mke2fs(image, first_groups * group_bytes + block, args, tree)
        if refused:
            raise GeneratorProblem(f'mke2fs refused {what}: {refused}')
        run_debugfs_script(image, ['feature meta_bg', 'ssv first_meta_bg 1'], case.scratch, 'meta_bg')
        require_fsck_clean(image, 'after setting first_meta_bg')
        os.truncate(image, size)
        run(['resize2fs', image])
        if not re.search(r'First meta block group:\s*1$', run(['dumpe2fs', '-h', image]).out, re.M):
            raise GeneratorProblem('first_meta_bg is not 1 after resize2fs')
    else:
        case.log(f'meta_bg: {what}')
        os.mkdir(tree)
        os.utime(tree, (0, FAKE_TIME))
        refused = case.mke2fs(image, size, args)
        if refused:
            raise GeneratorProblem(f'mke2fs refused {what}: {refused}')
    remove = fill_groups_before(case, image, first_late)
    late = case.path('late')
    frag_data = (4 * ((block - 12) // 12) + 200) * block
    budget = max(128 << 10, last_groups * group_bytes // 3 - frag_data)
    build_tree(rng, late, TreeSpec(block, budget=budget, files=(8, 25), dirs=(2, 6), fragmented=True))
    name = random_name(rng, set(os.listdir(tree)), long_ok=False)
    run_debugfs_script(image, populate_script(late, name, make_top=True, large_inodes=True) + remove,
                       case.scratch, 'populate')
    run(['cp', '-a', late, os.path.join(tree, name)])
    # libext2fs computes the bitmap of a BLOCK_UNINIT group without the meta_bg descriptor
    # backup in the last group of a meta group; clearing the flag above wrote that bitmap out,
    # and e2fsck marks the block in use again.
    fixed = fsck_fix(image, 'after filling and populating')
    if fixed.returncode:
        case.log('e2fsck -fy: ' + ' | '.join(l for l in fixed.out.splitlines()
                                             if l.strip() and not l.startswith(('Pass ', 'qb-random', 'e2fsck ')))[:200])
    require_placed_in(case, image, late, name, first_late)
    require_fsck_clean(image, 'the image')
    require_image_holds_tree(image, tree, case.scratch, 'the image')
    header = run(['dumpe2fs', '-h', image]).out
    first_meta = re.search(r'First meta block group:\s*(\d+)', header)
    backups = re.search(r'Backup block groups:\s*(.*)', header)
    case.log(f'first_meta_bg {first_meta.group(1) if first_meta else 0}'
             + (f', backup groups {backups.group(1).strip()}' if backups else ''))
    case.qbfs_extract(image, f'[meta_bg{" grown" if grown else ""}: {what}]', tree, 'out')


def run_layout(case):
    r = case.rng.random()
    if r < 0.7:
        run_layout_plain(case)
    elif r < 0.85:
        run_layout_meta_bg(case, grown=False)
    else:
        run_layout_meta_bg(case, grown=True)


# ---------------------------------------------------------------------------
# Driver

def run_case(mode, seed, qbfs, keep=None, verbose=False):
    """(failure lines, generator problem or None, log lines)."""
    if keep:
        keep = os.path.abspath(keep)                  # debugfs scripts name files by path
        os.makedirs(keep, exist_ok=True)
        if os.listdir(keep):
            raise SystemExit(f'fs-random.py: --keep {keep}: not empty')
        scratch = keep
    else:
        scratch = tempfile.mkdtemp(prefix=f'fs-random-{mode}-{seed}-')
    case = Case(mode, seed, qbfs, scratch, verbose)
    problem = None
    try:
        (run_journal if mode == 'journal' else run_layout)(case)
    except GeneratorProblem as e:
        problem = f'{mode} seed {seed}: generator problem: {e}'
    finally:
        if keep:
            with open(os.path.join(scratch, 'case.txt'), 'w', encoding='utf-8') as f:
                f.write('\n'.join(case.log_lines + case.failures + ([problem] if problem else [])) + '\n')
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return case.failures, problem, case.log_lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('mode', choices=['journal', 'layout', 'soak'])
    ap.add_argument('--seed', type=int, help='the case to make (journal, layout)')
    ap.add_argument('--seconds', type=float, help='how long to soak')
    ap.add_argument('--first-seed', type=int, help='soak: seeds FIRST, FIRST+1, ... instead of random ones')
    ap.add_argument('--mode', dest='only', choices=['journal', 'layout'], help='soak: only this mode')
    ap.add_argument('--qb-fs', dest='qbfs', help='the qb-fs to test (default: qb-fs on PATH)')
    ap.add_argument('--keep', metavar='DIR', help='keep images, trees and logs in DIR (new or empty)')
    ap.add_argument('-v', '--verbose', action='store_true', help='describe the case on stderr')
    try:
        args = ap.parse_args()
    except SystemExit as e:
        return 2 if e.code else 0
    if args.mode == 'soak' and args.seconds is None or args.mode != 'soak' and args.seed is None:
        ap.print_usage(sys.stderr)
        print(f'fs-random.py: {args.mode} needs ' + ('--seconds' if args.mode == 'soak' else '--seed'), file=sys.stderr)
        return 2
    qbfs = args.qbfs or shutil.which('qb-fs')
    if not qbfs or not os.access(qbfs, os.X_OK):
        print(f'fs-random.py: no qb-fs to test ({args.qbfs or "none on PATH"}); give --qb-fs PATH', file=sys.stderr)
        return 2
    qbfs = os.path.abspath(qbfs)
    missing = [t for t in ('mke2fs', 'debugfs', 'e2fsck', 'resize2fs', 'tune2fs', 'dumpe2fs') if not shutil.which(t)]
    if missing:
        print(f'fs-random.py: missing e2fsprogs tools: {" ".join(missing)}', file=sys.stderr)
        return 2

    if args.mode != 'soak':
        failures, problem, _ = run_case(args.mode, args.seed, qbfs, args.keep, args.verbose)
        for line in failures:
            print(line)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        if failures:
            return 1
        print(f'{args.mode} seed {args.seed}: OK')
        return 0

    me = os.path.abspath(__file__)
    deadline = time.monotonic() + args.seconds
    seeder = random.SystemRandom()
    ran, failed, broken = 0, 0, 0
    while time.monotonic() < deadline:
        mode = args.only or ('journal' if ran % 2 == 0 else 'layout')
        seed = args.first_seed + ran if args.first_seed is not None else seeder.randrange(1, 10 ** 9)
        started = time.monotonic()
        failures, problem, _ = run_case(mode, seed, qbfs)
        ran += 1
        took = time.monotonic() - started
        again = f'python3 {me} {mode} --seed {seed} --qb-fs {qbfs}'
        if failures:
            failed += 1
            more = f' (+{len(failures) - 1} more)' if len(failures) > 1 else ''
            print(f'FAIL {failures[0]}{more} [{took:.1f} s]\n  reproduce: {again}', flush=True)
        elif problem:
            broken += 1
            print(f'GENERATOR {problem} [{took:.1f} s]\n  reproduce: {again}', flush=True)
        elif args.verbose:
            print(f'ok   {mode} seed {seed} [{took:.1f} s]', flush=True)
    print(f'soak: {ran} seeds in {args.seconds:.0f} s: {failed} failed, {broken} generator problems, '
          f'{ran - failed - broken} passed')
    return 1 if failed else 2 if broken else 0


if __name__ == '__main__':
    sys.exit(main())
