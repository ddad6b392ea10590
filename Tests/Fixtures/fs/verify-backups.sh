#!/bin/bash
# verify-backups.sh [QB_BIN_DIR] — check the committed v4-fs-gzip, v3-fs-gzip and v4-fs-damaged
# backups against Tests/Fixtures/manifest.json:
#   (a) the documented manual procedure (FORMAT.md §11.3/§11.4: GNU tar, openssl dgst/enc, scrypt dec,
#       gunzip, tar -xS) restores every file byte for byte;
#   (b) qb-restore --passphrase ... -C DIR restores every file identical (sha256, size, holes);
#   (c) e2fsck -fn is clean on every healthy restored filesystem and complains on the damaged one;
#   (d) qb-fs -x reproduces the source tree (compare-tree.py; root.img: qb-fs finds partition 3);
#       on the damaged image it exits 3 and names exactly the damaged file, once.
# The source trees are rebuilt with fsfixture.py (they are deterministic) and must equal the
# manifest's "filesystem" listings. QB_BIN_DIR defaults to this checkout's .build/debug.
set -euo pipefail
export LC_ALL=C.UTF-8 TZ=UTC
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=$(cd "$HERE/.." && pwd)
BIN=${1:-$(cd "$FIX/../.." && pwd)/.build/debug}
PASS=qubes
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
FAILS=0
ok()   { echo "ok   $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

for kind in work damaged tpl-root tpl-private; do python3 "$HERE/fsfixture.py" tree "$kind" "$W/src-$kind"; done

# expected facts, one a line:  F FILE KEY SHA256 SIZE  |  V FILE VM SUBDIR  |
#                              S FILE VM VOLUME PARTITION DAMAGED(comma list or -)
python3 - "$FIX/manifest.json" "$HERE/fsfixture.py" "$W" > "$W/facts" <<'PY'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location('fsfixture', sys.argv[2])
fx = importlib.util.module_from_spec(spec); spec.loader.exec_module(fx)
w = sys.argv[3]
trees = {('v4-fs-gzip.qubes', 'work', 'private.img'): 'work',
         ('v4-fs-gzip.qubes', 'tpl', 'root.img'): 'tpl-root',
         ('v4-fs-gzip.qubes', 'tpl', 'private.img'): 'tpl-private',
         ('v3-fs-gzip.qubes', 'work', 'private.img'): 'work',
         ('v4-fs-damaged.qubes', 'work', 'private.img'): 'damaged'}
for e in json.load(open(sys.argv[1]))['fixtures']:
    if e['file'] not in ('v4-fs-gzip.qubes', 'v3-fs-gzip.qubes', 'v4-fs-damaged.qubes') or not e['valid']:
        continue
    f = e['file']
    print('B', f, e['version'], e['backup_id'] or '-')
    q = e['expected']['qubes.xml']
    print('F', f, 'qubes.xml', q['sha256'], q['size'], '-')
    for vm, v in e['expected'].items():
        if vm == 'qubes.xml':
            continue
        print('V', f, vm, v['subdir'])
        for key, fe in v['files'].items():
            print('F', f, key, fe['sha256'], fe['size'], vm)
        for fs in [v['filesystem']] + v.get('other_filesystems', []):
            tree = trees[(f, vm, fs['volume'])]
            same = fx.listing('%s/src-%s' % (w, tree), set(fs.get('damaged', []))) == fs['files']
            print('S', f, vm, fs['volume'], fs['partition'] or '-', ','.join(fs.get('damaged', [])) or '-',
                  tree, 'listing-ok' if same else 'listing-DIFFERS')
PY

sha() { sha256sum "$1" | cut -d' ' -f1; }
check_files() {   # check_files LABEL FILE DIR MODE : MODE manual = DIR/KEY, restore = DIR/VM/BASENAME
    local label=$1 f=$2 dir=$3 mode=$4 t file key sum size vm subdir p
    while read -r t file key sum size vm; do
        [ "$t" = F ] && [ "$file" = "$f" ] || continue
        if [ "$mode" = manual ] || [ "$key" = qubes.xml ]; then p=$dir/$key
        else subdir=$(awk -v f="$f" -v vm="$vm" '$1 == "V" && $2 == f && $3 == vm {print $4}' "$W/facts"); p=$dir/$vm/${key#"$subdir"}
        fi
        [ "$mode" = restore ] && [ "$key" = qubes.xml ] && continue   # qb-restore does not write qubes.xml
        if [ -f "$p" ] && [ "$(sha "$p")" = "$sum" ] && [ "$(stat -c %s "$p")" = "$size" ]; then
            ok "$label $f $key: sha256 $sum, $size bytes"
        else
            fail "$label $f $key: $(sha "$p" 2>/dev/null || echo missing), expected $sum"
        fi
    done < "$W/facts"
}

while read -r t f version id; do
    [ "$t" = B ] || continue
    B=$FIX/$f
    # ---------------------------------------------------------------- (a) manual procedure
    m=$W/manual-${f%.qubes}; mkdir -p "$m/x" "$m/out"
    (cd "$m/x" && tar -i -xf "$B")
    if [ "$version" = 4 ]; then
        echo "backup-header!$PASS" | scrypt dec -P "$m/x/backup-header.hmac" "$m/x/backup-header.verified"
        cmp -s "$m/x/backup-header" "$m/x/backup-header.verified" && ok "(a) $f: header authenticated (scrypt)" \
            || fail "(a) $f: header"
        hid=$(sed -n 's/^backup-id=//p' "$m/x/backup-header")
        [ "$hid" = "$id" ] || fail "(a) $f: backup-id $hid, manifest $id"
        for base in $(cd "$m/x" && find . -name '*.000.enc' | sed 's|^\./||; s|\.000\.enc$||' | sort); do
            for c in $(cd "$m/x" && ls "$base".*.enc | sort -V); do
                echo "$id!${c%.enc}!$PASS" | scrypt dec -P "$m/x/$c"
            done | gzip -d | tar -xSf - -C "$m/out"
        done
    else
        hm() { openssl dgst -sha512 -hmac "$PASS" "$1" | sed 's/^.*= //'; }
        bad=0
        for h in $(cd "$m/x" && find . -name '*.hmac' | sed 's|^\./||'); do
            [ "$(hm "$m/x/${h%.hmac}")" = "$(sed 's/^.*= //' "$m/x/$h")" ] || { bad=1; fail "(a) $f: HMAC of ${h%.hmac}"; }
        done
        [ $bad = 0 ] && ok "(a) $f: every HMAC (header and $(cd "$m/x" && find . -name '*.hmac' | wc -l) files) verified with openssl dgst -sha512 -hmac"
        for base in $(cd "$m/x" && find . -name '*.000' | sed 's|^\./||; s|\.000$||' | sort); do
            (cd "$m/x" && cat $(ls "$base".[0-9][0-9][0-9] | sort -V)) \
                | openssl enc -d -aes-256-cbc -md MD5 -pass "pass:$PASS" 2>/dev/null | gzip -d | tar -xSf - -C "$m/out"
        done
    fi
    check_files "(a)" "$f" "$m/out" manual
    # ---------------------------------------------------------------- (b) qb-restore
    r=$W/restore-${f%.qubes}; mkdir -p "$r"
    if QB_PASS=$PASS "$BIN/qb-restore" --passphrase env:QB_PASS -C "$r" "$B"; then ok "(b) $f: qb-restore exit 0"
    else fail "(b) $f: qb-restore exit $?"; fi
    check_files "(b)" "$f" "$r" restore
done < "$W/facts"

# ---------------------------------------------------------------- (c) e2fsck, (d) qb-fs
while read -r t f vm volume part damaged tree listing; do
    [ "$t" = S ] || continue
    [ "$listing" = listing-ok ] && ok "manifest $f $vm/$volume: files = the source tree $tree" \
        || fail "manifest $f $vm/$volume: files differ from the source tree $tree"
    img=$W/restore-${f%.qubes}/$vm/$volume
    target=$img where=""
    if [ "$part" != - ]; then
        where=" partition $part"
        start=$(sfdisk --json "$img" | python3 -c 'import json, sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1]) - 1]["start"])' "$part")
        target="$img?offset=$((start * 512))"
    fi
    rc=0; e2fsck -fn "$target" > "$W/fsck.out" 2>&1 || rc=$?
    if [ "$damaged" = - ]; then
        [ $rc = 0 ] && ok "(c) $f $vm/$volume$where: e2fsck -fn clean" \
            || fail "(c) $f $vm/$volume: e2fsck -fn exit $rc: $(cat "$W/fsck.out")"
    else
        [ $rc != 0 ] && ok "(c) $f $vm/$volume: e2fsck -fn exit $rc: $(grep -m1 -i 'checksum' "$W/fsck.out")" \
            || fail "(c) $f $vm/$volume: e2fsck -fn found nothing"
    fi
    x=$W/fs-${f%.qubes}-$vm-$volume
    rc=0; "$BIN/qb-fs" -x -C "$x" "$img" 2> "$W/qbfs.err" || rc=$?
    ign=()
    if [ "$damaged" = - ]; then
        [ $rc = 0 ] && ok "(d) $f $vm/$volume: qb-fs -x exit 0" || fail "(d) $f $vm/$volume: qb-fs exit $rc: $(cat "$W/qbfs.err")"
    else
        IFS=, read -ra dl <<< "$damaged"
        named=$(grep -c '(inode [0-9]*)' "$W/qbfs.err" || true)
        if [ $rc = 3 ] && [ "$named" = "${#dl[@]}" ] && grep -q "^qb-fs: ${dl[0]} (inode" "$W/qbfs.err"; then
            ok "(d) $f $vm/$volume: qb-fs -x exit 3, names only the damaged file: $(grep '(inode' "$W/qbfs.err")"
        else
            fail "(d) $f $vm/$volume: qb-fs exit $rc, said: $(cat "$W/qbfs.err")"
        fi
        for d in "${dl[@]}"; do ign+=(--ignore "$d"); done
    fi
    if out=$(python3 "$FIX/ext/compare-tree.py" --no-special --skip-root --extra lost+found "${ign[@]}" "$W/src-$tree" "$x" 2>&1); then
        ok "(d) $f $vm/$volume: $out"
    else
        fail "(d) $f $vm/$volume: $out"
    fi
done < "$W/facts"

echo "$FAILS failure(s)"
[ $FAILS = 0 ]
