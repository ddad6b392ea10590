#!/usr/bin/env bash
# Filesystem-extraction benchmark: qb-fs against debugfs, the program a user
# without root (no loop mount) would otherwise run, on the same ext4 image in
# the same run.
#
# It builds a deterministic source tree (about 10,000 files of 0-64 KiB in
# nested directories and one large directory, some files of 1-10 MiB, three
# of 100+ MiB at the default size, a few hard links and symlinks; the bytes
# come from AES-128-CTR of zeros under a fixed key, so they do not compress),
# makes an ext4 image of it with `mke2fs -d`, and times, alternating, best of
# QB_BENCH_RUNS with the min-max spread:
#   qb-fs -x        qb-fs -x -C OUT IMG (files written on one thread per CPU)
#   qb-fs -x -j 1   the same, files written on one thread
#   debugfs rdump   debugfs -R "rdump / OUT" IMG
#   qb-fs --tar     qb-fs --tar IMG > /dev/null (only if `qb-fs --tar` works)
# Everything (tree, image, outputs) lives in tmpfs (/dev/shm) when it has
# room, else under ${TMPDIR:-/var/tmp}; OUT is removed between runs (not
# timed). Wall and CPU (user+sys) seconds and peak RSS come from GNU time, of
# the fastest run. Once, untimed, each output tree is compared with the source
# (Tests/Fixtures/ext/compare-tree.py): qb-fs must reproduce it (the script
# fails otherwise); for debugfs, which does not keep hard links, whether it
# matched is only reported.
# Targets (printed with the result): qb-fs's wall time at most 0.8x
# debugfs's (aim 0.6x) and peak RSS at most 64 MiB.
# Output: a table on stdout, bench-results/fs.csv and fs.txt. qb-fs must be on PATH.
#   QB_BENCH_FS_MB     size of the source tree in MiB (default 700)
#   QB_BENCH_FS_FILES  number of small files (default 10000)
#   QB_BENCH_RUNS      runs per program, the fastest is kept (default 5)
#   QB_BENCH_FS_STRICT 1: exit 1 when a target is missed (default 0: report only)
#   QB_BENCH_OUT       results directory (default bench-results)
set -euo pipefail
mb=${QB_BENCH_FS_MB:-700}
nsmall=${QB_BENCH_FS_FILES:-10000}
runs=${QB_BENCH_RUNS:-5}
strict=${QB_BENCH_FS_STRICT:-0}
out=$(realpath -m "${QB_BENCH_OUT:-bench-results}")
compare=$(realpath "$(dirname "$0")/../Tests/Fixtures/ext/compare-tree.py")
mkdir -p "$out"
command -v qb-fs > /dev/null || { echo "bench/fs.sh: qb-fs is not on PATH" >&2; exit 2; }

# tree + image (about 1.3x the tree) + one output tree at a time, with margin
need_kib=$(( (mb * 7 / 2 + 256) << 10 ))
avail_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}' || true)
if [ -n "$avail_kib" ] && [ "$avail_kib" -ge "$need_kib" ]; then base=/dev/shm; else base=${TMPDIR:-/var/tmp}; fi
work=$(mktemp -d "$base/qb-bench-fs.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
src=$work/src img=$work/fs.img x=$work/x

# The source tree. Small files: size 64 KiB * u^3 (mostly small, mean 16 KiB)
# in a three-level directory tree, a tenth of them in one large (htree)
# directory; medium files of 1-10 MiB take about 15% of the size, three
# large ones share what is left.
python3 - "$src" "$mb" "$nsmall" <<'PY'
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
            sys.exit('bench/fs.sh: openssl stopped')
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
PY

src_kib=$(du -sk "$src" | cut -f1)
nfiles=$(find "$src" -type f | wc -l)
nmedium=$(find "$src/opt/media" -type f | wc -l)
img_mib=$(( src_kib * 13 / 10 / 1024 + 64 ))
mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$src" "$img" "${img_mib}M" > /dev/null

# one timed run: wall user sys rss_KiB into $work/t; the output goes to $x
timed() {  # command
    rm -rf "$x" && mkdir "$x"
    /usr/bin/time -f '%e %U %S %M' -o "$work/t" bash -c "set -euo pipefail; $1" > /dev/null
}

qbfs_x="qb-fs -x -C $x $img"
qbfs_x1="qb-fs -x -j 1 -C $x $img"
debugfs_x="debugfs -R 'rdump / $x' $img 2> $work/debugfs.err"
qbfs_tar="qb-fs --tar $img"

# Correctness, once and untimed.
timed "$qbfs_x"
python3 "$compare" --no-special --skip-root --extra lost+found "$src" "$x" > "$work/cmp.qbfs" 2>&1 \
    || { echo "bench/fs.sh: qb-fs -x did not reproduce the source tree:" >&2; head -20 "$work/cmp.qbfs" >&2; exit 1; }
timed "$debugfs_x"
if python3 "$compare" --no-special --skip-root --extra lost+found "$src" "$x" > "$work/cmp.debugfs" 2>&1; then
    debugfs_same=yes
else
    debugfs_same="no ($(grep -c ': ' "$work/cmp.debugfs" || true) differences, e.g. $(grep ': ' "$work/cmp.debugfs" | head -1))"
fi
rm -rf "$x"
# --tar counts only if it works: a tar archive listing at least every file.
with_tar=0
if n=$(qb-fs --tar "$img" 2> "$work/tar.err" | tar -tf - 2>> "$work/tar.err" | wc -l); then
    if [ "$n" -ge "$nfiles" ]; then with_tar=1; else echo "its archive lists $n entries, not $nfiles files" >> "$work/tar.err"; fi
fi

# Alternating runs; per program the fastest wall and that run's CPU and RSS.
names=(qbfs qbfs1 debugfs) ; cmds=("$qbfs_x" "$qbfs_x1" "$debugfs_x")
[ "$with_tar" = 1 ] && { names+=(qbfstar); cmds+=("$qbfs_tar"); }
declare -A best lo hi cpu rss
for _ in $(seq "$runs"); do
    for i in "${!names[@]}"; do
        n=${names[$i]}
        timed "${cmds[$i]}"
        read -r wall user sys peak < "$work/t"
        if [ -z "${best[$n]:-}" ] || awk "BEGIN{exit !($wall < ${best[$n]})}"; then
            best[$n]=$wall; cpu[$n]=$(awk "BEGIN{printf \"%.2f\", $user + $sys}"); rss[$n]=$peak
        fi
        { [ -z "${lo[$n]:-}" ] || awk "BEGIN{exit !($wall < ${lo[$n]})}"; } && lo[$n]=$wall
        { [ -z "${hi[$n]:-}" ] || awk "BEGIN{exit !($wall > ${hi[$n]})}"; } && hi[$n]=$wall
    done
done
rm -rf "$x"

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
declare -A label=([qbfs]="qb-fs -x" [qbfs1]="qb-fs -x -j 1" [debugfs]="debugfs rdump" [qbfstar]="qb-fs --tar >/dev/null")
echo "program,wall_s,wall_min_s,wall_max_s,cpu_s,rss_KiB,ratio_to_debugfs" > "$out/fs.csv"
{
  printf 'ext4 image of a %s MiB tree, %s files (%s small, %s of 1-10 MiB, 3 large), %s MiB image in %s, best of %s runs\n' \
      "$((src_kib >> 10))" "$nfiles" "$nsmall" "$nmedium" "$img_mib" "$base" "$runs"
  printf '%-24s %8s %13s %7s %9s %7s\n' program wall_s min-max cpu_s rss_MiB ratio
  for n in "${names[@]}"; do
      r=$(ratio "${best[$n]}" "${best[debugfs]}")
      printf '%-24s %8s %13s %7s %9s %7s\n' "${label[$n]}" "${best[$n]}" "${lo[$n]}-${hi[$n]}" "${cpu[$n]}" \
          "$(awk "BEGIN{printf \"%.1f\", ${rss[$n]} / 1024}")" "$r"
      echo "${label[$n]},${best[$n]},${lo[$n]},${hi[$n]},${cpu[$n]},${rss[$n]},$r" >> "$out/fs.csv"
  done
  [ "$with_tar" = 1 ] || echo "qb-fs --tar: skipped, it does not work here ($(head -1 "$work/tar.err"))"
  echo "output tree equals the source: qb-fs yes; debugfs $debugfs_same"
  r=$(ratio "${best[qbfs]}" "${best[debugfs]}")
  t_ok=$(awk "BEGIN{print ($r <= 0.8) ? \"met\" : \"MISSED\"}")
  m_ok=$([ "${rss[qbfs]}" -le $((64 << 10)) ] && echo met || echo MISSED)
  echo "targets: qb-fs wall <= 0.8x debugfs (aim 0.6x): ${r}x, $t_ok; peak RSS <= 64 MiB: $(awk "BEGIN{printf \"%.1f\", ${rss[qbfs]} / 1024}") MiB, $m_ok"
} | tee "$out/fs.txt"
if [ "$strict" = 1 ] && grep -q MISSED "$out/fs.txt"; then exit 1; fi
