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

# The source tree (bench/make-tree.py).
python3 "$(dirname "$0")/make-tree.py" "$src" "$mb" "$nsmall"

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
