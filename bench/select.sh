#!/usr/bin/env bash
# Selective-restore benchmark (issue 23): a genuine version 4 backup of a
# large VM followed by a small one (Tests/Fixtures/seek/make-large-small.sh:
# GNU tar, scrypt logN 10, uncompressed, 100 MiB chunks), and the small VM
# taken out of it, from the file (qb seeks past what is not restored) and
# from a pipe (it must read through). Each row: bytes read by the qb process
# (rchar of /proc/PID/io, read just before it is reaped) and wall seconds,
# best and min–max over QB_BENCH_RUNS runs; "cold" runs first drop the
# backup's pages from the page cache (dd iflag=nocache: this file only,
# no privileges), "warm" ones read it from memory. The last column is what
# the bytes read would take at 150 MB/s, a USB disk's pace: a figure
# computed from the bytes, not measured. The qb tools must be on PATH.
#   QB_BENCH_SELECT_LARGE_MB  the large VM in MiB (default 1536)
#   QB_BENCH_SELECT_SMALL_MB  the small VM in MiB (default 4)
#   QB_BENCH_RUNS             runs per row (default 3)
set -euo pipefail
large=${QB_BENCH_SELECT_LARGE_MB:-1536}
small=${QB_BENCH_SELECT_SMALL_MB:-4}
runs=${QB_BENCH_RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${QB_BENCH_OUT:-bench-results}")
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qb-bench-select.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export P=qubes

"$here/../Tests/Fixtures/seek/make-large-small.sh" "$work" "$large" "$small" genuine
B=$work/large-small.qubes
size=$(stat -c %s "$B")

# Runs a command line whose "COUNT tool args" is the process measured;
# prints "rchar wall_seconds".
cat > count.py <<'PY'
import os, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.monotonic()
p = subprocess.Popen(argv)
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
wall = time.monotonic() - start
with open('/proc/%d/io' % p.pid) as f:
    io = dict(line.split(': ') for line in f.read().splitlines())
with open(out, 'w') as f:
    f.write('%s %.3f\n' % (io['rchar'], wall))
status = p.wait()
sys.exit(status if status >= 0 else 128 - status)
PY

row() {  # case input cache command check
    local best="" lo="" hi="" bytes rchar wall n
    for n in $(seq "$runs"); do
        rm -rf x && mkdir x
        [ "$3" = cold ] && dd if="$B" iflag=nocache count=0 status=none
        bash -c "set -euo pipefail; ${4//COUNT /python3 $work/count.py $work/m }" > /dev/null
        eval "$5" || { echo "bench: $1 from $2 gave a wrong result" >&2; exit 1; }
        read -r rchar wall < m
        bytes=$rchar
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; fi
        { [ -z "$lo" ] || awk "BEGIN{exit !($wall < $lo)}"; } && lo=$wall
        { [ -z "$hi" ] || awk "BEGIN{exit !($wall > $hi)}"; } && hi=$wall
    done
    rm -rf x
    local mib usb
    mib=$(awk "BEGIN{printf \"%.1f\", $bytes / 1048576}")
    usb=$(awk "BEGIN{printf \"%.2f\", $bytes / 150e6}")
    printf '%-22s %-5s %-4s %12s %9s %8s %15s %9s\n' "$1" "$2" "$3" "$bytes" "$mib" "$best" "$lo-$hi" "$usb" | tee -a "$out/select.txt"
    echo "$1,$2,$3,$bytes,$best,$lo,$hi,$usb" >> "$out/select.csv"
}

restored() { cmp -s x/small/private.img "$work/small-private.img"; }
listed() { true; }
extracted() { [ -s x/vm6/private.img.000.enc ]; }

echo "case,input,cache,bytes_read,wall_s,wall_min_s,wall_max_s,s_at_150MBps" > "$out/select.csv"
printf 'backup: %s MiB VM then %s MiB VM, %s bytes; best of %s runs\n%-22s %-5s %-4s %12s %9s %8s %15s %9s\n' \
    "$large" "$small" "$size" "$runs" case input cache bytes_read MiB wall_s min-max_s "s@150MB/s" | tee "$out/select.txt"
for cache in cold warm; do
    row "qb-restore small" file "$cache" "COUNT qb-restore --no-progress --passphrase env:P -C x $B small" restored
    row "qb-restore small" pipe "$cache" "cat $B | COUNT qb-restore --no-progress --passphrase env:P -C x - small" restored
    row "qb-restore --list" file "$cache" "COUNT qb-restore --list --passphrase env:P $B" listed
    row "qb-untar -i -x vm6/" file "$cache" "COUNT qb-untar -i -x -C x -f $B 'vm6/*'" extracted
    row "qb-untar -i -x vm6/" pipe "$cache" "cat $B | COUNT qb-untar -i -x -C x 'vm6/*'" extracted
done
