#!/bin/sh
# Runs libFuzzer targets one after the other, each for a set time, with its
# dictionary and seeds; exits 1 if any target crashed (the others still run).
#   FuzzTesting/run-fuzz.sh [SECONDS] [TARGET...]
# FUZZ_RUNS=N also stops each target after N executions, whichever is first.
# Output goes to FuzzTesting/.fuzz/ (git-ignored): <target>/corpus (grown
# corpus), <target>/crash-* (findings), <target>.log (libFuzzer's output).
# Build first (see Package.swift for why the -Xswiftc flag):
#   swift build -c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address
set -eu
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"FuzzHeader FuzzDigestLine FuzzTar FuzzTarExtract FuzzOpenSSLEnc FuzzScryptFile FuzzQubesXML FuzzDecompress FuzzChunkNames FuzzRestore FuzzFilesystem"}
bin=${FUZZ_BIN:-$here/.build/release}
out=$here/.fuzz
# Swift's own crash reporter symbolicates for up to 30 s per crash; libFuzzer
# reports crashes itself.
export SWIFT_BACKTRACE=enable=no
# Recording the allocation stack of every malloc costs 10-30% of the
# executions; a finding is replayed by the tests (make check-sanitize), which
# keep full stacks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=0}

settings() {  # target -> "dictionary max_len [libFuzzer flags...]"
    case $1 in
        FuzzHeader) echo "header.dict 8192" ;;
        FuzzDigestLine) echo "header.dict 5000" ;;
        FuzzTar|FuzzTarExtract) echo "tar.dict 32768" ;;
        FuzzOpenSSLEnc) echo "crypto.dict 4096" ;;
        FuzzScryptFile) echo "crypto.dict 4096" ;;
        FuzzQubesXML) echo "xml.dict 16384" ;;
        FuzzDecompress) echo "compression.dict 16384" ;;
        FuzzChunkNames) echo "chunks.dict 2048" ;;
        # Its threads leave mallocs and frees unbalanced at the end of many
        # executions, and each imbalance makes libFuzzer run a full leak scan
        # (40% of the time, and never a leak found): the other targets, and
        # the tests under ASan, check for leaks.
        FuzzRestore) echo "restore.dict 65536 -detect_leaks=0" ;;
        # Seeds are up to 66 KiB (their runs of zeros cut out, see
        # FuzzEntries.writeFilesystemImage); room to grow. A hostile image
        # must not cost a reader more than a second or 256 MiB: an input
        # that does is a finding (a timeout or an out-of-memory crash).
        FuzzFilesystem) echo "filesystem.dict 131072 -timeout=1 -rss_limit_mb=256 -malloc_limit_mb=256" ;;
        *) echo "unknown fuzz target $1" >&2; exit 2 ;;
    esac
}

status=0
mkdir -p "$out"
for t in $targets; do
    set -- $(settings "$t")
    dict=$1 max_len=$2
    shift 2
    mkdir -p "$out/$t/corpus"
    echo "== $t: ${seconds}s${FUZZ_RUNS:+ or $FUZZ_RUNS runs}, dictionary $dict, max_len $max_len"
    # The target's own flags ("$@") come after the defaults: libFuzzer
    # takes the last of a flag given twice. ASan's quarantine of freed
    # memory (256 MiB by default) would count against a 256 MiB limit.
    if ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=16" \
        "$bin/$t" -max_total_time="$seconds" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -rss_limit_mb=2048 -timeout=10 "$@" -max_len="$max_len" \
        -dict="$here/Dictionaries/$dict" -artifact_prefix="$out/$t/" -print_final_stats=1 \
        "$out/$t/corpus" "$here/Seeds/${t%Extract}" >"$out/$t.log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec)' "$out/$t.log" || true
    else
        echo "!! $t failed; see $out/$t.log and $out/$t/" >&2
        grep -E '^==[0-9]+==|fuzz invariant|Fatal error|SUMMARY|Test unit written' "$out/$t.log" | head -20 >&2 || true
        status=1
    fi
done
exit $status
