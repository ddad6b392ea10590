#!/bin/bash
# selftest.sh [SCRATCH] — check the fixtures themselves (no Swift): make-tree.sh is
# reproducible, every make-image.sh kind builds, the undamaged images pass e2fsck -fn,
# the damaged ones fail it, and compare-tree.py catches deliberate alterations.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
S=${1:-$(mktemp -d)}
mkdir -p "$S"; rm -rf "$S/src" "$S/src2" "$S/alt" "$S/img"; mkdir "$S/img"
fail() { echo "SELFTEST FAILED: $*" >&2; exit 1; }

"$HERE/make-tree.sh" "$S/src"
"$HERE/make-tree.sh" "$S/src2"
"$HERE/compare-tree.py" "$S/src" "$S/src2" || fail "make-tree.sh is not reproducible"

for k in $("$HERE/make-image.sh" --list | cut -f1); do
    "$HERE/make-image.sh" "$k" "$S/src" "$S/img/$k.img" >/dev/null 2>"$S/img/$k.log" \
        || { cat "$S/img/$k.log" >&2; fail "make-image.sh $k"; }
    off=$(sed -n 's/^offset=//p' "$S/img/$k.img.expected" 2>/dev/null || true)
    rc=0; e2fsck -fn "$S/img/$k.img?offset=${off:-0}" >"$S/img/$k.fsck" 2>&1 || rc=$?
    case $k in
    cycle|corrupt-inode|huge-size) [ $rc -ne 0 ] || fail "$k: e2fsck -fn found it clean" ;;
    dirty-journal) grep -q 'skipping journal recovery' "$S/img/$k.fsck" || fail "$k: journal not dirty" ;;
    *) [ $rc -eq 0 ] || { cat "$S/img/$k.fsck" >&2; fail "$k: e2fsck -fn exited $rc"; } ;;
    esac
    echo "ok   $k (e2fsck -fn rc=$rc)"
done

# compare-tree.py must catch each alteration, one at a time
alter() {   # alter NAME SHELL-CODE (run inside a copy of the tree)
    rm -rf "$S/alt"; cp -a "$S/src" "$S/alt"
    (cd "$S/alt" && eval "$2")
    if "$HERE/compare-tree.py" "$S/src" "$S/alt" > "$S/alt.out"; then
        fail "compare-tree.py missed: $1"
    fi
    echo "ok   compare-tree.py catches $1: $(head -1 "$S/alt.out")"
}
keep_mtime() { touch -h -r "$S/src/$1" "$1"; touch -r "$S/src/$(dirname "$1")" "$(dirname "$1")"; }
alter 'changed byte'    'printf Z | dd of=sizes/size-4097 bs=1 seek=100 conv=notrunc status=none; keep_mtime sizes/size-4097'
alter 'changed mode'    'chmod 0640 modes/mode-0600'
alter 'lost setuid'     'chmod 0755 modes/setuid-4755'
alter 'broken hard link' 'rm links/b/third; cp -p links/a/original links/b/third; keep_mtime links/b/third'
alter 'filled hole'     'cp --sparse=never -p sparse/hole-middle sparse/x; mv sparse/x sparse/hole-middle; keep_mtime sparse/hole-middle'
alter 'symlink target'  'rm symlinks/dangling; ln -s elsewhere symlinks/dangling; keep_mtime symlinks/dangling'
alter 'mtime'           'touch -d @5 sizes/size-0'
alter 'missing fifo'    'rm special/fifo; keep_mtime special/fifo 2>/dev/null || touch -r "$S/src/special" special'
alter 'extra file'      ': > extra; touch -r "$S/src" .'
alter 'type change'     'rm special/fifo; : > special/fifo; keep_mtime special/fifo'
# and accept what the options allow
rm -rf "$S/alt"; cp -a "$S/src" "$S/alt"; rm "$S/alt/special/fifo"; chmod 0755 "$S/alt/modes/setuid-4755"
touch -r "$S/src/special" "$S/alt/special"
"$HERE/compare-tree.py" --skip-special --no-special "$S/src" "$S/alt" >/dev/null || fail "--skip-special/--no-special"
"$HERE/compare-tree.py" --ignore special/fifo --no-special "$S/src" "$S/alt" >/dev/null || fail "--ignore"
echo "ok   options --skip-special, --no-special, --ignore"
echo "selftest: all passed (scratch $S)"
