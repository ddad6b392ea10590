#!/usr/bin/env bash
# A VM's files straight from the backup (qb-restore --list-files, --files
# --path) against the route through the image (qb-restore --files
# --files-only, which writes private.img, extracts it and removes it), on
# the same backup in the same run.
#
# It builds the VM of issue 26: a private.img of QB_BENCH_FILES_IMAGE_GB GiB
# (default 8) made by `mke2fs -d` from bench/make-tree.py's tree of
# QB_BENCH_FILES_COUNT small files (default 100,000) and a few large ones
# (QB_BENCH_FILES_MB MiB in all, default 2560), then a version 4 backup of
# it written as Qubes writes it (Tests/Fixtures/fs/make-backups.sh: sparse
# tar, gzip, 100 MiB chunks, real `scrypt enc` at logN QB_BENCH_FILES_LOGN,
# default 20 as Qubes). Timed, best of QB_BENCH_RUNS (default 3) with the
# min-max spread:
#   listing         qb-restore --list-files -v BACKUP work > /dev/null
#   one directory   qb-restore --files --path /usr03 (about a twelfth of the small files)
#   everything      qb-restore --files --path /
#   through image   qb-restore --files --files-only
# For each: wall seconds, peak RSS (GNU time), passes over the backup and
# metadata kept (from -v), and the disk it wrote: the output directory's
# allocated bytes when it is done, plus, for the route through the image,
# the image's allocated bytes (measured once without --files-only), which it
# wrote and removed. The trees extracted are compared, once and untimed,
# with the route through the image (Tests/Fixtures/ext/compare-tree.py); the
# script fails if they differ.
# Output: a table on stdout, bench-results/files.csv and files.txt.
# qb-restore must be on PATH.
#   QB_BENCH_OUT       results directory (default bench-results)
set -euo pipefail
gb=${QB_BENCH_FILES_IMAGE_GB:-8}
mb=${QB_BENCH_FILES_MB:-2560}
nsmall=${QB_BENCH_FILES_COUNT:-100000}
logn=${QB_BENCH_FILES_LOGN:-20}
runs=${QB_BENCH_RUNS:-3}
out=$(realpath -m "${QB_BENCH_OUT:-bench-results}")
here=$(cd "$(dirname "$0")" && pwd)
compare=$here/../Tests/Fixtures/ext/compare-tree.py
mkdir -p "$out"
command -v qb-restore > /dev/null || { echo "bench/files.sh: qb-restore is not on PATH" >&2; exit 2; }

# tree, image, backup, one output tree and one restored image, with margin
need_kib=$(( (mb * 6 + 1024) << 10 ))
avail_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}' || true)
if [ -n "$avail_kib" ] && [ "$avail_kib" -ge "$need_kib" ]; then base=/dev/shm; else base=${TMPDIR:-/var/tmp}; fi
work=$(mktemp -d "$base/qb-bench-files.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
export P=qubes

python3 "$here/make-tree.py" "$work/src" "$mb" "$nsmall"
nfiles=$(find "$work/src" -type f | wc -l)
mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$work/src" "$work/private.img" "${gb}G" > /dev/null
rm -rf "$work/src"
QB_SCRYPT_LOGN=$logn bash "$here/../Tests/Fixtures/fs/make-backups.sh" --volume "$work/private.img" $((100 << 20)) "$work/backup.qubes" > /dev/null
rm -rf "$work/private.img" "$work/build-backup.qubes"
backup=$work/backup.qubes

# one timed run: wall rss_KiB into $work/t, -v's lines into $work/err; the output goes to $work/x
timed() {  # command
    rm -rf "$work/x" && mkdir "$work/x"
    /usr/bin/time -f '%e %M' -o "$work/t" bash -c "set -euo pipefail; cd $work/x; $1" > /dev/null 2> "$work/err" \
        || { echo "bench/files.sh: failed: $1" >&2; tail -5 "$work/err" >&2; exit 1; }
}
allocated() { du -s --block-size=1 "$1" | cut -f1; }

listing="qb-restore --list-files -v --passphrase env:P $backup work"
one="qb-restore --files -v --path /usr03 --passphrase env:P $backup work"
all="qb-restore --files -v --path / --passphrase env:P $backup work"
image="qb-restore --files --files-only -v --passphrase env:P $backup work"

# Correctness and the image's size, once and untimed.
timed "qb-restore --files -v --passphrase env:P $backup work"
image_bytes=$(allocated "$work/x/work/private.img")
mv "$work/x/work/files" "$work/expected"
for path in / /usr03; do
    timed "qb-restore --files -v --path $path --passphrase env:P $backup work"
    python3 "$compare" --no-special --skip-root "$work/expected${path%/}" "$work/x/work/files${path%/}" > "$work/cmp" 2>&1 \
        || { echo "bench/files.sh: --files --path $path differs from the route through the image:" >&2; head -20 "$work/cmp" >&2; exit 1; }
done
rm -rf "$work/expected"

declare -A best worst rss written passes kept
rows=(listing one all image)
for ((r = 0; r < runs; r++)); do
    for row in "${rows[@]}"; do
        timed "${!row}"
        read -r wall mem < "$work/t"
        bytes=$(allocated "$work/x")
        [ "$row" = image ] && bytes=$((bytes + image_bytes))
        if [ -z "${best[$row]:-}" ] || awk "BEGIN{exit !($wall < ${best[$row]})}"; then
            best[$row]=$wall rss[$row]=$mem written[$row]=$bytes
            passes[$row]=$(sed -n 's/.*: read in \([0-9]*\) pass.*/\1/p' "$work/err" | head -1)
            [ "$row" = image ] && passes[$row]=1
            kept[$row]=$(sed -n 's/.*(metadata kept: \(.*\) in memory, \(.*\) in a spill file).*/\1 + \2 spilled/p' "$work/err" | head -1)
        fi
        if [ -z "${worst[$row]:-}" ] || awk "BEGIN{exit !($wall > ${worst[$row]})}"; then worst[$row]=$wall; fi
    done
done

label() {
    case $1 in
        listing) echo "listing (--list-files)" ;;
        one) echo "one directory (--files --path /usr03)" ;;
        all) echo "everything (--files --path /)" ;;
        image) echo "through the image (--files --files-only)" ;;
    esac
}
mib() { awk "BEGIN{printf \"%.0f MiB\", $1 / 1048576}"; }
backup_mib=$(( $(stat -c %s "$backup") >> 20 ))
{
    echo "A VM's files straight from a v4 backup ($backup_mib MiB, scrypt logN $logn, 100 MiB chunks):"
    echo "private.img of $gb GiB, ext4, $nfiles files; best of $runs runs, min-max; disk = bytes written"
    echo "that stay or were written and removed (the image)."
    printf '%-42s %-14s %-10s %-7s %-10s %s\n' "" "time (s)" "disk" "passes" "peak RSS" "metadata kept"
    for row in "${rows[@]}"; do
        printf '%-42s %-14s %-10s %-7s %-10s %s\n' "$(label "$row")" "${best[$row]}-${worst[$row]}" "$(mib "${written[$row]}")" \
            "${passes[$row]:--}" "$((rss[$row] >> 10)) MiB" "${kept[$row]:--}"
    done
} | tee "$out/files.txt"
{
    echo "row,best_s,worst_s,disk_bytes,passes,rss_kib"
    for row in "${rows[@]}"; do
        echo "$row,${best[$row]},${worst[$row]},${written[$row]},${passes[$row]:-},${rss[$row]}"
    done
} > "$out/files.csv"
