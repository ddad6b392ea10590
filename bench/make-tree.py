#!/usr/bin/env python3
"""make-tree.py TOP MB NSMALL: the deterministic source tree of the benchmarks
(bench/fs.sh, bench/files.sh), about MB MiB under TOP: NSMALL files of 0-64 KiB
(size 64 KiB * u^3, mean 16 KiB) in a three-level directory tree, a tenth of
them in one large (htree) directory; files of 1-10 MiB taking about 15% of the
size; three large ones sharing what is left; a few hard links and symlinks. The
bytes come from AES-128-CTR of zeros under a fixed key (openssl), so they do
not compress; names, sizes, modes and times come from a fixed seed."""
import os, random, subprocess, sys
top, mb, nsmall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261201)
gen = subprocess.Popen(['openssl', 'enc', '-aes-128-ctr', '-nosalt',
                        '-K', '000102030405060708090a0b0c0d0e0f', '-iv', '0' * 32],
                       stdin=open('/dev/zero', 'rb'), stdout=subprocess.PIPE, bufsize=0)
def data(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = gen.stdout.read(n - len(buf))
        if not chunk:
            sys.exit('make-tree.py: openssl stopped')
        buf += chunk
    return bytes(buf)
def write(path, size, mode=0o644):
    with open(path, 'wb') as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(data(n))
            left -= n
    os.chmod(path, mode)
mtime = 1700000000
def stamp(path, follow=True):
    global mtime
    mtime += 37
    os.utime(path, (mtime, mtime), follow_symlinks=follow)

total = mb << 20
used = 0
os.makedirs(top)
dirs = []
for a in range(12):
    for b in range(8):
        for c in range(6):
            d = os.path.join(top, 'usr%02d' % a, 'lib%d' % b, 'pkg%d' % c)
            os.makedirs(d)
            dirs.append(d)
big_dir = os.path.join(top, 'var', 'mail', 'cur')
os.makedirs(big_dir)
small = []
for i in range(nsmall):
    d = big_dir if i % 10 == 0 else dirs[rng.randrange(len(dirs))]
    size = 0 if i % 500 == 0 else int(65536 * rng.random() ** 3)
    p = os.path.join(d, 'f%05d%s' % (i, rng.choice(['.c', '.h', '.py', '.txt', '.so', '', '.json'])))
    write(p, size, rng.choice([0o644, 0o644, 0o644, 0o755, 0o600, 0o444]))
    stamp(p)
    small.append(p)
    used += size
os.makedirs(os.path.join(top, 'opt', 'media'))
medium_budget = min(total * 15 // 100, max(total - used, 0))
m = 0
while medium_budget >= (1 << 20):
    size = min(rng.randrange(1 << 20, 10 << 20), medium_budget)
    p = os.path.join(top, 'opt', 'media', 'm%03d.bin' % m)
    write(p, size)
    stamp(p)
    medium_budget -= size
    used += size
    m += 1
left = max(total - used, 0)
os.makedirs(os.path.join(top, 'home', 'user'))
for k in range(3):
    size = left // 3 + (left % 3 if k == 2 else 0)
    p = os.path.join(top, 'home', 'user', ['disk.img', 'archive.tar', 'video.mkv'][k])
    write(p, size)
    stamp(p)
# hard links (small files, one medium), symlinks (short, long = not inline, dangling, to a directory)
links = os.path.join(top, 'links')
os.makedirs(links)
for j in range(5):
    os.link(small[j * 7 + 1], os.path.join(links, 'hard%d' % j))
os.link(small[3], os.path.join(dirs[5], 'second-name-of-f00003'))
if m:
    os.link(os.path.join(top, 'opt', 'media', 'm000.bin'), os.path.join(links, 'hard-medium'))
for name, target in [('short', '../usr00/lib0/pkg0'), ('dangling', 'no/such/file'),
                     ('absolute', '/etc/hostname'),
                     ('long', '../' + '/'.join('directory-level-%02d' % i for i in range(12)) + '/target'),
                     ('to-big-file', '../home/user/disk.img')]:
    p = os.path.join(links, name)
    os.symlink(target, p)
    stamp(p, follow=False)
gen.kill()
gen.wait()
# directory mtimes last, deepest first
for root, subdirs, files in sorted(os.walk(top), key=lambda t: -t[0].count('/')):
    stamp(root)
