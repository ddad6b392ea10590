#!/usr/bin/env bash
# Whole-restore benchmark (issue #6): a realistic backup of one VM image,
# made with real GNU tar, gzip, openssl and scrypt the way Qubes writes it,
# restored four ways in the same run:
#   documented  the Qubes document's procedure: extract, verify the header,
#               read qubes.xml, verify/decrypt the chunks, intermediate files on disk
#   pipeline    the best single shell pipeline of GNU tar / openssl / scrypt / gzip
#               for the image alone (it authenticates nothing: speed only)
#   qb-tools    the script `qb-restore --explain` prints: header, qubes.xml,
#               then one pipeline of the small tools per file
#   qb-restore  one process, one pass
# plus every stage alone on the same bytes (ours and the manual program).
# Each way runs QB_BENCH_RUNS times (the fastest counts; min–max is the
# noise); wall and CPU seconds, peak RSS of the largest process, peak
# temporary disk, and ratios. The qb tools must be on PATH.
#   QB_BENCH_IMAGE_MB  apparent image size in MiB (default 2048): a quarter
#                      holes, the rest half compressible, half random
#   QB_BENCH_CHUNK_MB  chunk size (default 100, as Qubes)
#   QB_BENCH_V4_LOGN   scrypt logN of the "default" v4 variant (default 20, Qubes')
#   QB_BENCH_RUNS      runs per way for v3 and cheap v4 (default 3)
#   QB_BENCH_V4_RUNS   runs per way at QB_BENCH_V4_LOGN (default 1: minutes each)
#   QB_BENCH_FORMATS   which rows to measure: "v3 v4" (default), "v3" or "v4"
#                      (e.g. the v4 rows alone, before and after a change to
#                      key derivation; the ratios printed are those measured)
set -euo pipefail
mb=${QB_BENCH_IMAGE_MB:-2048}
chunk=$(( ${QB_BENCH_CHUNK_MB:-100} << 20 ))
logn=${QB_BENCH_V4_LOGN:-20}
runs=${QB_BENCH_RUNS:-3}
v4runs=${QB_BENCH_V4_RUNS:-1}
formats=" ${QB_BENCH_FORMATS:-v3 v4} "
want() { [[ $formats == *" $1 "* ]]; }
out=$(realpath -m "${QB_BENCH_OUT:-bench-results}")
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qb-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export QB_BENCH_PASS=benchmark
id=20261123T120000-4242
cd "$work"

# An image of $1 MiB in 16 MiB stripes; $2 names what each stripe i holds
# from i mod 4: h hole, t compressible text, r random.
make_image() {  # path MiB pattern
    rm -f "$1" && truncate -s "${2}M" "$1"
    local i
    for i in $(seq 0 $(($2 / 16 - 1))); do
        case ${3:$((i % ${#3})):1} in
            h) ;;
            t) { yes "qubes backup benchmark line $i with some text to compress" || true; } | head -c $((16 << 20)) \
                   | dd of="$1" bs=1M seek=$((i * 16)) conv=notrunc status=none ;;
            r) head -c $((16 << 20)) /dev/urandom | dd of="$1" bs=1M seek=$((i * 16)) conv=notrunc status=none ;;
        esac
    done
}
mkdir -p src/vm3
cat > src/qubes.xml <<XML
<QubesVmCollection><QubesAppVm qid="3" name="work" template_qid="1" label="green" backup_content="True" backup_path="vm3" backup_size="$((mb << 20))"/></QubesVmCollection>
XML

# outer: one tar per member, concatenated, as Qubes' writer does.
member() { tar --posix -C stage -cf - "$1"; }
chunked() {  # file stream-command... : cut the stream into chunks under stage/
    local file=$1; shift
    "$@" | split -b "$chunk" -d -a 3 - "stage/$file."
}
build_v3() {  # output
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
      done; } > "$1"
}
build_v4() {  # output logN
    rm -rf stage && mkdir -p stage/vm3
    printf 'version=4\nhmac-algorithm=scrypt\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nbackup-id=%s\n' "$id" > stage/backup-header
    printf '%s\n' "backup-header!$QB_BENCH_PASS" | scrypt enc -P --logN "$2" -r 8 -p 1 stage/backup-header stage/backup-header.hmac
    chunked qubes.xml bash -c "tar -C src -cf - qubes.xml | gzip"
    chunked vm3/private.img bash -c "tar -C src --sparse -cf - vm3/private.img | gzip"
    { member backup-header; member backup-header.hmac
      for c in stage/qubes.xml.??? stage/vm3/private.img.???; do
          c=${c#stage/}
          printf '%s\n' "$id!$c!$QB_BENCH_PASS" | scrypt enc -P --logN "$2" -r 8 -p 1 "stage/$c" "stage/$c.enc"
          member "$c.enc"
      done; } > "$1"
}

# The Qubes document's steps, files on disk (run inside an empty directory).
documented_v3() {  # backup
    echo "tar -i -xf $1
    for f in backup-header qubes.xml.000 vm3/private.img.???; do
        [ \"\$(openssl dgst -sha512 -hmac \"\$QB_BENCH_PASS\" < \$f)\" = \"\$(cat \$f.hmac)\" ]
    done
    openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS -in qubes.xml.000 2>/dev/null | gzip -d | tar -xf -
    grep -q 'name=\"work\"' qubes.xml
    cat vm3/private.img.??? | openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS -out private.img.dec 2>/dev/null
    mv private.img.dec private.img.dec.gz && gunzip private.img.dec.gz
    tar -xf private.img.dec"
}
documented_v4() {  # backup
    echo "tar -i -xf $1
    printf '%s\n' \"backup-header!\$QB_BENCH_PASS\" | scrypt dec -P backup-header.hmac backup-header.verified
    cmp backup-header backup-header.verified
    printf '%s\n' \"$id!qubes.xml.000!\$QB_BENCH_PASS\" | scrypt dec -P qubes.xml.000.enc qubes.xml.000
    gzip -dc < qubes.xml.000 | tar -xf -
    grep -q 'name=\"work\"' qubes.xml
    for f in \$(ls vm3/private.img.*.enc | sort -V); do
        printf '%s\n' \"$id!\${f%.enc}!\$QB_BENCH_PASS\" | scrypt dec -P \$f
    done > private.img.gz
    gzip -d private.img.gz && tar -xf private.img"
}

# Best wall of $runs runs of a way, with its CPU, RSS (KiB, largest process)
# and peak temporary disk (KiB, everything in x/ but the restored image).
measure() {  # format way command runs
    local best="" lo="" hi="" cpu rss temp wall user sys peak img n
    for n in $(seq "$4"); do
        rm -rf x && mkdir x
        ( while :; do du -sk x 2>/dev/null | cut -f1; sleep 0.2; done ) > disk.log &
        local watcher=$!
        /usr/bin/time -f '%e %U %S %M' -o t bash -c "set -euo pipefail; cd x; $3" > /dev/null
        kill "$watcher"; wait "$watcher" 2>/dev/null || true
        read -r wall user sys rss < t
        cmp -s src/vm3/private.img "$(find x -name private.img -type f | head -1)" \
            || { echo "bench: $1 $2 restored a different image" >&2; exit 1; }
        peak=$(sort -n disk.log | tail -1)
        img=$(find x -name private.img -type f -exec du -k {} + | awk '{s+=$1} END{print s+0}')
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then
            best=$wall; cpu=$(awk "BEGIN{print $user + $sys}"); temp=$(( ${peak:-0} > img ? ${peak:-0} - img : 0 ))
            kept_rss=$rss
        fi
        { [ -z "$lo" ] || awk "BEGIN{exit !($wall < $lo)}"; } && lo=$wall
        { [ -z "$hi" ] || awk "BEGIN{exit !($wall > $hi)}"; } && hi=$wall
    done
    rm -rf x
    printf '%-10s %-11s %8s %13s %8s %10s %10s\n' "$1" "$2" "$best" "$lo-$hi" "$cpu" "$kept_rss" "$temp" | tee -a "$out/restore.txt"
    echo "$1,$2,$best,$lo,$hi,$cpu,$kept_rss,$temp" >> "$out/restore.csv"
    eval "w_${1//-/_}_${2//-/_}=$best"
}

# One stage alone on bytes prepared beforehand; best of $runs.
stage() {  # format name command
    local best="" wall n
    for n in $(seq "$runs"); do
        rm -rf e && mkdir e
        /usr/bin/time -f '%e' -o t bash -c "set -euo pipefail; $3" > /dev/null
        wall=$(cat t)
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; fi
    done
    rm -rf e
    printf '%-10s %-24s %8s\n' "$1" "$2" "$best" | tee -a "$out/restore.txt"
    echo "$1,stage:$2,$best,,,,," >> "$out/restore.csv"
    eval "s_${2//[^a-z0-9]/_}=$best"
}

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
explain() {  # backup: the small-tool script, written once, timed as a way
    qb-restore --explain --passphrase env:QB_BENCH_PASS -C . "$1" > "$work/explain.sh"
}

echo "format,way,wall_s,wall_min_s,wall_max_s,cpu_s,rss_KiB,tmp_KiB" > "$out/restore.csv"
printf 'image %s MiB apparent, %s MiB chunks, best of %s runs (v4 logN %s: %s)\n%-10s %-11s %8s %13s %8s %10s %10s\n' \
    "$mb" "$((chunk >> 20))" "$runs" "$logn" "$v4runs" format way wall_s noise_s cpu_s rss_KiB tmp_KiB | tee "$out/restore.txt"

make_image src/vm3/private.img "$mb" htrt
data_kib=$(du -k src/vm3/private.img | cut -f1)

if want v3; then
# v3
build_v3 v3.qubes
B=$work/v3.qubes
explain "$B"
measure v3 documented "$(documented_v3 "$B")" "$runs"
measure v3 pipeline "tar -i -xOf $B --wildcards 'vm3/private.img.[0-9][0-9][0-9]' \
    | openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS 2>/dev/null | gzip -d | tar -xf -" "$runs"
measure v3 qb-tools "bash $work/explain.sh" "$runs"
measure v3 qb-restore "qb-restore --no-progress --passphrase env:QB_BENCH_PASS $B" "$runs"

# Each stage alone, on the bytes it sees in the pipeline.
qb-untar -i --tar 'vm3/private.img.[0-9]*' < "$B" > chunks.tar
cat stage/vm3/private.img.??? > stream.enc
qb-decrypt --passphrase env:QB_BENCH_PASS < stream.enc > stream.gz
qb-decompress -f gzip < stream.gz > inner.tar
stage v3 "qb-untar -i" "qb-untar -i --tar 'vm3/private.img.[0-9]*' < $B"
stage v3 "qb-hmac --check" "qb-hmac --check --passphrase env:QB_BENCH_PASS < chunks.tar"
stage v3 "qb-decrypt" "qb-decrypt --passphrase env:QB_BENCH_PASS < stream.enc"
stage v3 "qb-decompress" "qb-decompress -f gzip < stream.gz"
stage v3 "qb-untar -x" "qb-untar -x -C e < inner.tar"
stage v3 "openssl dgst -hmac" "for c in stage/vm3/private.img.???; do openssl dgst -sha512 -hmac \$QB_BENCH_PASS < \$c; done"
stage v3 "openssl enc -d" "openssl enc -d -aes-256-cbc -md MD5 -pass env:QB_BENCH_PASS < stream.enc 2>/dev/null"
stage v3 "gzip -d" "gzip -dc < stream.gz"
stage v3 "tar -x" "tar -x -C e < inner.tar"
rm -f chunks.tar stream.enc stream.gz inner.tar
slowest=$(printf '%s\n' "$s_qb_untar__i" "$s_qb_hmac___check" "$s_qb_decrypt" "$s_qb_decompress" "$s_qb_untar__x" | sort -g | tail -1)

# The same apparent size and mix with a quarter of the data (3/16 of the
# image, not 3/4): time and disk should follow the data.
make_image src/vm3/private.img "$mb" trthhhhhhhhhhhhh
sparse_kib=$(du -k src/vm3/private.img | cut -f1)
build_v3 v3s.qubes
measure v3-sparse qb-restore "qb-restore --no-progress --passphrase env:QB_BENCH_PASS $work/v3s.qubes" "$runs"
rm -f v3s.qubes
make_image src/vm3/private.img "$mb" htrt
fi

# v4: cheap scrypt parameters (data-bound), then Qubes' (KDF-bound).
if want v4; then
for variant in cheap default; do
    n=$([ $variant = cheap ] && echo 10 || echo "$logn")
    r=$([ $variant = cheap ] && echo "$runs" || echo "$v4runs")
    rm -f v3.qubes
    build_v4 v4.qubes "$n"
    B=$work/v4.qubes
    explain "$B"
    measure "v4-$variant" documented "$(documented_v4 "$B")" "$r"
    measure "v4-$variant" qb-tools "bash $work/explain.sh" "$r"
    measure "v4-$variant" qb-restore "qb-restore --no-progress --passphrase env:QB_BENCH_PASS $B" "$r"
done
fi

{
  echo
  echo "image: $mb MiB apparent, $((data_kib >> 10)) MiB data$(want v3 && echo "; sparse variant: $((sparse_kib >> 10)) MiB data")"
  echo "ratios to the documented procedure (wall time, below 1 is faster):"
  if want v3; then
    echo "  v3          pipeline $(ratio "$w_v3_pipeline" "$w_v3_documented")  qb-tools $(ratio "$w_v3_qb_tools" "$w_v3_documented")  qb-restore $(ratio "$w_v3_qb_restore" "$w_v3_documented")"
  fi
  if want v4; then
    echo "  v4 logN 10  qb-tools $(ratio "$w_v4_cheap_qb_tools" "$w_v4_cheap_documented")  qb-restore $(ratio "$w_v4_cheap_qb_restore" "$w_v4_cheap_documented")"
    echo "  v4 logN $logn  qb-tools $(ratio "$w_v4_default_qb_tools" "$w_v4_default_documented")  qb-restore $(ratio "$w_v4_default_qb_restore" "$w_v4_default_documented")"
  fi
  if want v3; then
    echo "v3 against its slowest stage alone ($slowest s):  qb-tools $(ratio "$w_v3_qb_tools" "$slowest")  qb-restore $(ratio "$w_v3_qb_restore" "$slowest")"
    echo "sparse: qb-restore time per data MiB, quarter-data image / full image: $(awk "BEGIN{printf \"%.2f\", ($w_v3_sparse_qb_restore / $sparse_kib) / ($w_v3_qb_restore / $data_kib)}")"
  fi
} | tee -a "$out/restore.txt"
