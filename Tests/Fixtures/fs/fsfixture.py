#!/usr/bin/env python3
"""Helpers for make-backups.sh (python3 standard library only).

  fsfixture.py tree KIND DIR          make the source tree KIND (work, damaged, tpl-root,
                                      tpl-private) in DIR (must not exist)
  fsfixture.py fixups DIR             print a debugfs -w script that gives every inode of the
                                      image made from DIR fixed owners and times
  fsfixture.py listing DIR [DAMAGED...]  print the manifest "files" object of DIR (JSON)
  fsfixture.py sparse-tar FILE NAME PID  write FILE to stdout as Qubes R4's sparse tar writer
                                      (qubes/tarwriter.py) does: PAX GNU.sparse 1.0, member
                                      NAME, placeholder DIR/GNUSparseFile.PID/BASE (FORMAT.md 8.2)
  fsfixture.py file-entry FILE        print {"size", "sha256", "sparse"} of a restored file
"""
import hashlib
import json
import os
import stat
import sys

T0 = 1434369600            # 2015-06-15 12:00:00 UTC, as E2FSPROGS_FAKE_TIME in make-image.sh
USER_UID = USER_GID = 1000  # "user" in a Qubes VM


def det_bytes(n, tag):
    """n deterministic, incompressible bytes: SHA-256(tag:counter) blocks."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b'%s:%d' % (tag.encode(), i)).digest()
        i += 1
    return bytes(out[:n])


# Each tree: list of (path, kind, arg, mode, mtime offset). kind: dir, file (arg = bytes),
# sparse (arg = (size, [(offset, bytes)])), symlink (arg = target), hardlink (arg = existing path).
NOTES = (b'Meeting notes\n=============\n\n'
         b'- restore the work qube from the backup\n'
         b'- check that every document survived\n')


def tree_work(damaged=False):
    e = [
        ('home', 'dir', None, 0o755, 0),
        ('home/user', 'dir', None, 0o700, 0),
        ('home/user/.bashrc', 'file', b'# .bashrc\nexport EDITOR=vi\n', 0o644, 11),
        ('home/user/Documents', 'dir', None, 0o755, 0),
        ('home/user/Documents/notes.txt', 'file', NOTES, 0o644, 21),
        ('home/user/Documents/notes-hardlink.txt', 'hardlink', 'home/user/Documents/notes.txt', None, None),
        ('home/user/Documents/r\u00e9sum\u00e9.txt', 'file', 'Curriculum vit\u00e6 \u2014 \u00fcn\u00efcode\n'.encode(), 0o600, 22),
        ('home/user/Documents/empty.txt', 'file', b'', 0o644, 23),
        ('home/user/Documents/photo.raw', 'file', det_bytes(300 * 1024, 'photo.raw'), 0o644, 24),
        ('home/user/Documents/projects', 'dir', None, 0o755, 0),
        ('home/user/Documents/projects/qb', 'dir', None, 0o750, 0),
        ('home/user/Documents/projects/qb/TODO', 'file', b'write the fixtures\n', 0o664, 31),
        ('home/user/Documents/projects/run.sh', 'file', b'#!/bin/sh\necho hello\n', 0o755, 32),
        ('home/user/Downloads', 'dir', None, 0o755, 0),
        ('home/user/Downloads/sparse.bin', 'sparse', (1 << 20, [(512 * 1024, det_bytes(4096, 'sparse'))]), 0o644, 41),
        ('home/user/notes-link', 'symlink', 'Documents/notes.txt', None, 51),
        ('home/user/long-link', 'symlink', 'Documents/projects/qb/' + 'x' * 70 + '/does-not-exist', None, 52),
        ('rw', 'dir', None, 0o755, 0),
        ('rw/config', 'dir', None, 0o755, 0),
        ('rw/config/rc.local', 'file', b'#!/bin/sh\n# This script is run at VM startup.\n', 0o755, 61),
        ('rw/bind-dirs', 'dir', None, 0o755, 0),
    ]
    if damaged:
        e.insert(6, ('home/user/Documents/broken.txt', 'file',
                     b'This file\'s inode checksum is broken on purpose.\n' * 3, 0o644, 25))
    return e


def tree_tpl_root():
    return [
        ('etc', 'dir', None, 0o755, 0),
        ('etc/hostname', 'file', b'tpl\n', 0o644, 1),
        ('etc/os-release', 'file', b'NAME="Qubes test template"\nID=qbtest\nVERSION_ID=1\n', 0o644, 2),
        ('usr', 'dir', None, 0o755, 0),
        ('usr/bin', 'dir', None, 0o755, 0),
        ('usr/bin/hello', 'file', b'#!/bin/sh\ncat /usr/share/doc/hello.txt\n', 0o755, 3),
        ('usr/share', 'dir', None, 0o755, 0),
        ('usr/share/doc', 'dir', None, 0o755, 0),
        ('usr/share/doc/hello.txt', 'file', b'Hello from the root filesystem of tpl (partition 3).\n', 0o644, 4),
        ('usr/share/doc/blob.bin', 'file', det_bytes(40 * 1024, 'tpl-blob'), 0o644, 5),
        ('bin', 'symlink', 'usr/bin', None, 6),
        ('home', 'dir', None, 0o755, 0),
        ('rw', 'dir', None, 0o755, 0),
    ]


def tree_tpl_private():
    return [
        ('home', 'dir', None, 0o755, 0),
        ('home/user', 'dir', None, 0o700, 0),
        ('home/user/.bashrc', 'file', b'# .bashrc of the template\n', 0o644, 1),
        ('rw', 'dir', None, 0o755, 0),
        ('rw/config', 'dir', None, 0o755, 0),
        ('rw/config/rc.local', 'file', b'#!/bin/sh\n', 0o755, 2),
    ]


TREES = {'work': lambda: tree_work(False), 'damaged': lambda: tree_work(True),
         'tpl-root': tree_tpl_root, 'tpl-private': tree_tpl_private}


def owner(rel):
    return (USER_UID, USER_GID) if rel == 'home/user' or rel.startswith('home/user/') else (0, 0)


def make_tree(kind, top):
    os.umask(0o022)
    os.mkdir(top)
    entries = TREES[kind]()
    as_root = os.geteuid() == 0
    dirs = []
    for rel, k, arg, mode, mt in entries:
        p = os.path.join(top, rel)
        if k == 'dir':
            os.mkdir(p)
            dirs.append((rel, mode))
            continue
        if k == 'file':
            with open(p, 'wb') as f:
                f.write(arg)
        elif k == 'sparse':
            size, parts = arg
            with open(p, 'wb') as f:
                for off, data in parts:
                    f.seek(off)
                    f.write(data)
                f.truncate(size)
        elif k == 'symlink':
            os.symlink(arg, p)
        elif k == 'hardlink':
            os.link(os.path.join(top, arg), p)
            continue
        if k != 'symlink':
            os.chmod(p, mode)
        if as_root:
            os.lchown(p, *owner(rel))
        os.utime(p, (T0 + mt, T0 + mt), follow_symlinks=False)
    # directories bottom-up, after their contents
    for rel, mode in sorted(dirs, key=lambda d: -d[0].count('/')):
        p = os.path.join(top, rel)
        os.chmod(p, mode)
        if as_root:
            os.lchown(p, *owner(rel))
        os.utime(p, (T0 + 100, T0 + 100))
    os.chmod(top, 0o755)
    os.utime(top, (T0 + 200, T0 + 200))


def walk(top):
    out = []
    def rec(rel):
        full = os.path.join(top, rel) if rel else top
        for n in sorted(os.listdir(full)):
            r = os.path.join(rel, n) if rel else n
            st = os.lstat(os.path.join(top, r))
            out.append((r, st))
            if stat.S_ISDIR(st.st_mode):
                rec(r)
    rec('')
    return out


def dbg_quote(path):
    assert '"' not in path and '\n' not in path
    return '"/%s"' % path


def fixups(top):
    """debugfs script: owners, and atime=ctime=crtime=mtime (nanoseconds 0) for every inode
    made from TOP (mke2fs -d copies the source's ctime, which nobody can choose)."""
    lines = []
    items = [('', os.lstat(top))] + walk(top)
    seen = set()
    for rel, st in items:
        if st.st_ino in seen:
            continue
        seen.add(st.st_ino)
        q = dbg_quote(rel) if rel else '/'
        uid, gid = owner(rel)
        t = '@%d' % int(st.st_mtime)
        for field, val in (('uid', uid), ('gid', gid), ('atime', t), ('ctime', t), ('crtime', t),
                           ('atime_extra', 0), ('ctime_extra', 0), ('mtime_extra', 0), ('crtime_extra', 0)):
            lines.append('sif %s %s %s' % (q, field, val))
    lines.append('sif /lost+found atime @%d' % T0)
    for f in ('atime_extra', 'ctime_extra', 'mtime_extra', 'crtime_extra'):
        lines.append('sif /lost+found %s 0' % f)
    return '\n'.join(lines) + '\n'


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''):
            h.update(b)
    return h.hexdigest()


def listing(top, damaged=()):
    files = {}
    entries = walk(top)
    groups = {}
    for rel, st in entries:
        if stat.S_ISREG(st.st_mode):
            groups.setdefault(st.st_ino, []).append(rel)
    for rel, st in entries:
        m = '%04o' % stat.S_IMODE(st.st_mode)
        uid, gid = owner(rel)
        if stat.S_ISDIR(st.st_mode):
            e = {'type': 'dir', 'mode': m}
        elif stat.S_ISLNK(st.st_mode):
            e = {'type': 'symlink', 'target': os.readlink(os.path.join(top, rel))}
        elif stat.S_ISREG(st.st_mode):
            e = {'type': 'file', 'size': st.st_size, 'sha256': sha256_file(os.path.join(top, rel)), 'mode': m}
            if st.st_nlink > 1:
                e['nlink'] = st.st_nlink
                e['hardlinks'] = sorted(groups[st.st_ino])
            if st.st_blocks * 512 < st.st_size:
                e['sparse'] = True
        else:
            raise SystemExit('%s: unexpected type' % rel)
        e['mtime'] = int(st.st_mtime)
        e['uid'], e['gid'] = uid, gid
        if rel in damaged:
            e['damaged'] = True
        files[rel] = e
    return files


def sparse_tar(path, name, pid):
    """Qubes R4 qubes/tarwriter.py output (FORMAT.md 8.2), byte for byte."""
    with open(path, 'rb') as f:
        data = f.read()
    realsize = len(data)
    regions = []        # (offset, length) of runs of non-zero 512-byte blocks
    off = 0
    start = None
    while off < realsize:
        blk = data[off:off + 512]
        if blk.count(0) != len(blk):
            if start is None:
                start = off
        elif start is not None:
            regions.append((start, off - start))
            start = None
        off += len(blk)
    if start is not None:
        regions.append((start, realsize - start))
    if not regions or regions[-1][0] + regions[-1][1] != realsize:
        regions.append((realsize, 0))
    smap = ('%d\n' % len(regions) + ''.join('%d\n%d\n' % r for r in regions)).encode()
    smap += b'\0' * (-len(smap) % 512)
    stored = len(smap) + sum(n for _, n in regions)
    assert stored < 8 << 30

    def rec(k, v):
        body = ' %s=%s\n' % (k, v)
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        return ('%d%s' % (n, body)).encode()
    pax = (rec('GNU.sparse.major', 1) + rec('GNU.sparse.minor', 0) +
           rec('GNU.sparse.name', name) + rec('GNU.sparse.realsize', realsize))

    def header(hname, mode, size, typ):
        h = bytearray(512)
        def put(off, b):
            h[off:off + len(b)] = b
        hb = hname.encode()
        assert len(hb) <= 100, hname
        put(0, hb)
        put(100, b'%07o\0' % mode)
        put(108, b'0000000\0')
        put(116, b'0000000\0')
        put(124, b'%011o\0' % size)
        put(136, b'00000000000\0')
        put(148, b' ' * 8)
        put(156, typ)
        put(257, b'ustar\x0000')
        put(148, b'%06o\0 ' % sum(h))
        return bytes(h)
    base = os.path.basename(name)
    placeholder = os.path.join(os.path.dirname(name), 'GNUSparseFile.%d' % pid, base)
    out = sys.stdout.buffer
    out.write(header('././@PaxHeader', 0, len(pax), b'x'))
    out.write(pax + b'\0' * (-len(pax) % 512))
    out.write(header(placeholder, 0o644, stored, b'0'))
    out.write(smap)
    for o, n in regions:
        out.write(data[o:o + n])
    out.write(b'\0' * 1024)


def file_entry(p):
    st = os.stat(p)
    return {'size': st.st_size, 'sha256': sha256_file(p), 'sparse': st.st_blocks * 512 < st.st_size}


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ''
    if cmd == 'tree' and len(argv) == 4:
        make_tree(argv[2], argv[3])
    elif cmd == 'fixups' and len(argv) == 3:
        sys.stdout.write(fixups(argv[2]))
    elif cmd == 'listing' and len(argv) >= 3:
        json.dump(listing(argv[2], set(argv[3:])), sys.stdout, indent=1, ensure_ascii=False)
    elif cmd == 'sparse-tar' and len(argv) == 5:
        sparse_tar(argv[2], argv[3], int(argv[4]))
    elif cmd == 'file-entry' and len(argv) == 3:
        json.dump(file_entry(argv[2]), sys.stdout)
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv)
