#!/usr/bin/env bash
# Whole-restore benchmark (issue #6): a realistic backup of one VM image,
# made with real GNU tar, gzip, openssl and scrypt the way Qubes writes it,
# restored four ways in the same run:
#   documented  the Qubes document's procedure, intermediate files on disk
#   pipeline    the best single shell pipeline of GNU tar / openssl / scrypt / gzip
#               (it authenticates nothing: shown for speed only)
#   qb-tools    our small-tool pipeline (qb-untar | qb-hmac --check | ...)
#   qb-restore  one process, one pass
# plus the slowest single stage alone on the same bytes. Reports wall and CPU
# seconds, peak RSS of the largest process, peak temporary disk, and ratios
# to the documented procedure. The qb tools must be on PATH.
#   QB_BENCH_IMAGE_MB  apparent image size in MiB (default 2048): a quarter
#                      holes, the rest half compressible, half random
#   QB_BENCH_CHUNK_MB  chunk size (default 100, as Qubes)
#   QB_BENCH_V4_LOGN   scrypt logN of the "default" v4 variant (default 20, Qubes')
set -euo pipefail
mb=${QB_BENCH_IMAGE_MB:-2048}
chunk=$(( ${QB_BENCH_CHUNK_MB:-100} << 20 ))
logn=${QB_BENCH_V4_LOGN:-20}
out=${QB_BENCH_OUT:-bench-results}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qb-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export QB_BENCH_PASS=benchmark
cd "$work"

# The image: holes, compressible text, random data, in 16 MiB stripes.
mkdir -p src/vm3
truncate -s "${mb}M" src/vm3/private.img
stripes=$((mb / 16))
for i in $(seq 0 $((stripes - 1))); do
    case $((i % 4)) in
        0) ;;  # hole
        1|2) { yes "qubes backup benchmark line $i with some text to compress" || true; } | head -c $((16 << 20)) \
                 | dd of=src/vm3/private.img bs=1M seek=$((i * 16)) conv=notrunc status=none ;;
        3) head -c $((16 << 20)) /dev/urandom | dd of=src/vm3/private.img bs=1M seek=$((i * 16)) conv=notrunc status=none ;;
    esac
done
cat > src/qubes.xml <<XML
<QubesVmCollection><QubesAppVm qid="3" name="work" template_qid="1" label="green" backup_content="True" backup_path="vm3" backup_size="$((mb << 20))"/></QubesVmCollection>
XML

# outer: one tar per member, concatenated, as Qubes' writer does.
member() { tar --posix -C stage -cf - "$1"; }
chunked() {  # file stream-command... : cut the stream into chunks under stage/
    local file=$1; shift
    "$@" | split -b "$chunk" -d -a 3 - "stage/$file."
}
build_v3() {
    rm -rf stage && mkdir -p stage/vm3
    printf 'version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n' > stage/backup-header
    openssl dgst -sha512 -hmac "$QB_BENCH_PASS" < stage/backup-header > stage/backup-header.hmac
    local enc="openssl enc -e -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS 2>/dev/null"
    chunked qubes.xml bash -c "tar -C src -cf - qubes.xml | gzip | $enc"
    chunked vm3/private.img bash -c "tar -C src --sparse -cf - vm3/private.img | gzip | $enc"
    { member backup-header; member backup-header.hmac
      for c in stage/qubes.xml.??? stage/vm3/private.img.???; do
          c=${c#stage/}
          openssl dgst -sha512 -hmac "$QB_BENCH_PASS" < "stage/$c" > "stage/$c.hmac"
          member "$c"; member "$c.hmac"
      done; } > v3.qubes
}
build_v4() {  # logN
    rm -rf stage && mkdir -p stage/vm3
    printf 'version=4\nhmac-algorithm=scrypt\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nbackup-id=20261123T120000-4242\n' > stage/backup-header
    printf '%s\n' "backup-header!$QB_BENCH_PASS" | scrypt enc -P --logN "$1" -r 8 -p 1 stage/backup-header stage/backup-header.hmac
    chunked qubes.xml bash -c "tar -C src -cf - qubes.xml | gzip"
    chunked vm3/private.img bash -c "tar -C src --sparse -cf - vm3/private.img | gzip"
    { member backup-header; member backup-header.hmac
      for c in stage/qubes.xml.??? stage/vm3/private.img.???; do
          c=${c#stage/}
          printf '%s\n' "20261123T120000-4242!$c!$QB_BENCH_PASS" | scrypt enc -P --logN "$1" -r 8 -p 1 "stage/$c" "stage/$c.enc"
          member "$c.enc"
      done; } > v4.qubes
}

# wall, user+sys CPU, peak RSS (KiB) of the largest process, peak temporary disk (KiB)
measure() {  # name command
    rm -rf x && mkdir x
    local peak=0 pid s
    ( while :; do du -sk x 2>/dev/null | cut -f1; sleep 0.2; done ) > disk.log &
    pid=$!
    /usr/bin/time -f '%e %U %S %M' -o t bash -c "set -euo pipefail; cd x; $2" > /dev/null
    kill "$pid"; wait "$pid" 2>/dev/null || true
    read -r wall user sys rss < t
    peak=$(sort -n disk.log | tail -1)
    # Temporary disk: everything in x/ but the restored image's own blocks.
    img=$(find x -name private.img -type f -exec du -k {} + | awk '{s+=$1} END{print s+0}')
    temp=$(( ${peak:-0} > img ? ${peak:-0} - img : 0 ))
    cmp -s src/vm3/private.img "$(find x -name private.img -type f | head -1)" || { echo "bench: $1 restored a different image" >&2; exit 1; }
    cpu=$(awk "BEGIN{print $user + $sys}")
    printf '%-9s %-11s %8s %8s %10s %10s\n' "$3" "$1" "$wall" "$cpu" "$rss" "$temp" | tee -a "$out/restore.txt"
    echo "$3,$1,$wall,$cpu,$rss,$temp" >> "$out/restore.csv"
    eval "w_${3//-/_}_${1//-/_}=$wall"
}

: > "$out/restore.csv"
printf 'image %s MiB apparent, %s MiB chunks\n%-9s %-11s %8s %8s %10s %10s\n' "$mb" "$((chunk >> 20))" \
    format way wall_s cpu_s rss_KiB tmp_KiB | tee "$out/restore.txt"

build_v3
B=$work/v3.qubes
measure documented "tar -i -xf $B
    for f in backup-header vm3/private.img.???; do
        [ \"\$(openssl dgst -sha512 -hmac \"\$QB_BENCH_PASS\" < \$f)\" = \"\$(cat \$f.hmac)\" ]
    done
    cat vm3/private.img.??? | openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS -out private.img.dec
    mv private.img.dec private.img.dec.gz && gunzip private.img.dec.gz
    tar -xf private.img.dec" v3
measure pipeline "tar -i -xOf $B --wildcards 'vm3/private.img.[0-9][0-9][0-9]' \
    | openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS | gzip -d | tar -xf -" v3
measure qb-tools "mkdir work; qb-untar -i --tar 'vm3/private.img.[0-9]*' < $B | qb-hmac --check --passphrase env:QB_BENCH_PASS \
    | qb-decrypt --passphrase env:QB_BENCH_PASS | qb-decompress -f gzip \
    | qb-untar -x --within vm3/private.img --strip-components 1 -C work" v3
measure qb-restore "qb-restore --no-progress --passphrase env:QB_BENCH_PASS $B" v3
# The slowest stage alone, on the same bytes, for the 1.15x target.
cat stage/vm3/private.img.??? > stream.enc
qb-decrypt --passphrase env:QB_BENCH_PASS < stream.enc > stream.gz
stage_alone() {  # label command
    /usr/bin/time -f '%e' -o t bash -c "$2" > /dev/null
    printf '%-9s %-11s %8s\n' v3 "$1" "$(cat t)" | tee -a "$out/restore.txt"
    echo "v3,$1,$(cat t),,," >> "$out/restore.csv"
}
stage_alone "stage:hmac" "qb-untar -i --tar 'vm3/private.img.[0-9]*' < $B | qb-hmac --check --passphrase env:QB_BENCH_PASS"
stage_alone "stage:decrypt" "qb-decrypt --passphrase env:QB_BENCH_PASS < stream.enc"
stage_alone "stage:inflate" "qb-decompress -f gzip < stream.gz"
rm -f stream.enc stream.gz

for variant in cheap default; do
    n=$([ $variant = cheap ] && echo 10 || echo "$logn")
    build_v4 "$n"
    B=$work/v4.qubes
    measure documented "tar -i -xf $B
        printf '%s\n' \"backup-header!\$QB_BENCH_PASS\" | scrypt dec -P backup-header.hmac backup-header.verified
        cmp backup-header backup-header.verified
        for f in \$(ls vm3/private.img.*.enc | sort -V); do
            printf '%s\n' \"20261123T120000-4242!\${f%.enc}!\$QB_BENCH_PASS\" | scrypt dec -P \$f
        done > private.img.gz
        gzip -d private.img.gz && tar -xf private.img" "v4-$variant"
    measure qb-tools "mkdir work; qb-untar -i --tar 'vm3/private.img.[0-9]*' < $B \
        | qb-decrypt --chunks --backup-id 20261123T120000-4242 --passphrase env:QB_BENCH_PASS | qb-decompress -f gzip \
        | qb-untar -x --within vm3/private.img --strip-components 1 -C work" "v4-$variant"
    measure qb-restore "qb-restore --no-progress --passphrase env:QB_BENCH_PASS $B" "v4-$variant"
done

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
{
  echo
  echo "ratios to the documented procedure (wall time, below 1 is faster):"
  echo "  v3          pipeline $(ratio "$w_v3_pipeline" "$w_v3_documented")  qb-tools $(ratio "$w_v3_qb_tools" "$w_v3_documented")  qb-restore $(ratio "$w_v3_qb_restore" "$w_v3_documented")"
  echo "  v4 cheap    qb-tools $(ratio "$w_v4_cheap_qb_tools" "$w_v4_cheap_documented")  qb-restore $(ratio "$w_v4_cheap_qb_restore" "$w_v4_cheap_documented")"
  echo "  v4 logN $logn qb-tools $(ratio "$w_v4_default_qb_tools" "$w_v4_default_documented")  qb-restore $(ratio "$w_v4_default_qb_restore" "$w_v4_default_documented")"
} | tee -a "$out/restore.txt"
