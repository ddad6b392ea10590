#!/usr/bin/env bash
# Stage benchmarks: each qb tool against the program of the manual procedure
# on the same bytes, in the same run. Reports wall seconds, peak RSS and the
# ratio qb/manual (below 1 is faster). The qb tools must be on PATH.
#   QB_BENCH_MB   size of the plaintext in MiB (default 256)
#   QB_BENCH_RUNS runs per command, the fastest is kept (default 3)
set -euo pipefail
mb=${QB_BENCH_MB:-256}
runs=${QB_BENCH_RUNS:-3}
out=${QB_BENCH_OUT:-bench-results}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export QB_BENCH_PASS=benchmark

# A VM-image-like input: a quarter zeros, half compressible text, a quarter random.
q=$((mb / 4))
{ head -c $((q << 20)) /dev/zero
  { yes 'the quick brown fox jumps over the lazy dog 0123456789' || true; } | head -c $((2 * q << 20))
  head -c $((q << 20)) /dev/urandom; } > "$work/plain"
gzip -1 -c "$work/plain" > "$work/plain.gz"
openssl enc -e -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS -in "$work/plain.gz" -out "$work/plain.gz.enc" 2>/dev/null

# best-of-N wall time and the peak RSS of that run
measure() {
    local best="" rss=0 t r
    for _ in $(seq "$runs"); do
        /usr/bin/time -f '%e %M' -o "$work/time" bash -c "$1" > /dev/null
        read -r t r < "$work/time"
        if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; rss=$r; fi
    done
    echo "$best $rss"
}

printf '%-12s %-44s %8s %10s\n' stage command seconds peak_KiB | tee "$out/stages.txt"
row() {  # stage label command
    read -r t r < <(measure "$3")
    printf '%-12s %-44s %8s %10s\n' "$1" "$2" "$t" "$r" | tee -a "$out/stages.txt"
    echo "$1,$2,$t,$r" >> "$out/stages.csv"
    eval "last_$4=$t"
}
: > "$out/stages.csv"
row decrypt "openssl enc -d -md MD5" "openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS -in $work/plain.gz.enc 2>/dev/null" m1
row decrypt "qb-decrypt" "qb-decrypt --passphrase env:QB_BENCH_PASS $work/plain.gz.enc" q1
row inflate "gzip -dc" "gzip -dc $work/plain.gz" m2
row inflate "qb-decompress -f gzip (ISA-L)" "qb-decompress -f gzip $work/plain.gz" q2
row inflate "qb-decompress -f gzip --inflate zlib" "qb-decompress -f gzip --inflate zlib $work/plain.gz" q3
row hmac "openssl dgst -sha512 -hmac" "openssl dgst -sha512 -hmac \$QB_BENCH_PASS $work/plain.gz.enc" m4
row hmac "qb-hmac" "qb-hmac --passphrase env:QB_BENCH_PASS $work/plain.gz.enc" q4
row pipeline "openssl enc -d | gzip -dc" "openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS -in $work/plain.gz.enc 2>/dev/null | gzip -dc" m5
row pipeline "qb-decrypt | qb-decompress" "set -o pipefail; qb-decrypt --passphrase env:QB_BENCH_PASS $work/plain.gz.enc | qb-decompress -f gzip" q5

# A sparse VM image: 1 GiB apparent, data every 16th MiB; GNU tar --sparse.
mkdir -p "$work/img" "$work/x-tar" "$work/x-qb"
truncate -s 1G "$work/img/private.img"
for i in $(seq 0 16 1008); do head -c $((1 << 20)) /dev/urandom | dd of="$work/img/private.img" bs=1M seek="$i" conv=notrunc status=none; done
tar -C "$work/img" --sparse -cf "$work/img.tar" private.img
row untar "tar -xf (sparse, 1 GiB apparent)" "rm -rf $work/x-tar/*; tar -C $work/x-tar -xf $work/img.tar" m6
row untar "qb-untar -x" "rm -rf $work/x-qb/*; qb-untar -x -C $work/x-qb -f $work/img.tar" q6
cmp "$work/x-tar/private.img" "$work/x-qb/private.img"

# v4 chunks at Qubes' scrypt parameters (logN 20, r 8, p 1: 1 GiB, seconds
# per derivation): the manual loop of `scrypt dec` against qb-decrypt --chunks.
nchunks=${QB_BENCH_V4_CHUNKS:-4}
mkdir -p "$work/v4/vm3"
head -c $((nchunks * 8 << 20)) "$work/plain.gz" | split -b $((8 << 20)) -d -a 3 - "$work/v4/vm3/private.img."
for c in "$work"/v4/vm3/private.img.???; do
    n=vm3/${c##*/}
    printf '%s\n' "BENCHID!$n!$QB_BENCH_PASS" | scrypt enc -P --logN 20 -r 8 -p 1 "$c" "$c.enc"
    rm "$c"
done
(cd "$work/v4" && tar --posix -cf ../v4.tar vm3/*.enc)
row v4-chunks "scrypt dec, one chunk after another" "cd $work/v4 && for c in vm3/private.img.*.enc; do printf '%s\\n' \"BENCHID!\${c%.enc}!\$QB_BENCH_PASS\" | scrypt dec -P \$c; done" m7
row v4-chunks "qb-decrypt --chunks (keys in parallel)" "qb-decrypt --chunks --backup-id BENCHID --passphrase env:QB_BENCH_PASS $work/v4.tar" q7

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
{
  echo
  echo "ratios qb/manual on ${mb} MiB (best of $runs):"
  echo "  decrypt  $(ratio "$last_q1" "$last_m1")"
  echo "  inflate  $(ratio "$last_q2" "$last_m2") (ISA-L), $(ratio "$last_q3" "$last_m2") (zlib)"
  echo "  hmac     $(ratio "$last_q4" "$last_m4")"
  echo "  pipeline $(ratio "$last_q5" "$last_m5")"
  echo "  untar    $(ratio "$last_q6" "$last_m6") (sparse image)"
  echo "  v4       $(ratio "$last_q7" "$last_m7") ($nchunks chunks, scrypt logN 20)"
} | tee "$out/ratios.txt"
