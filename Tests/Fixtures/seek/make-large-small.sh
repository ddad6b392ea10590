#!/bin/bash
# make-large-small.sh OUTDIR LARGE_MIB SMALL_MIB genuine|placeholder
#
# A version 4 backup (issue 23) of two AppVMs, a large one first: "large"
# (vm5/private.img, LARGE_MIB of zeros, stored without --sparse so that
# every byte is in the backup) and "small" (vm6/private.img, SMALL_MIB of
# pseudo-random bytes), uncompressed, 100 MiB chunks, scrypt logN 10 —
# written the way make-backups.sh (and Qubes) write: every member its own
# `tar -cO --posix` archive, concatenated.
#
#   genuine      every chunk a real scrypt envelope (make bench)
#   placeholder  large's chunks are holes of an envelope's size: a restore
#                of "small" must never read them, and --verify-only must
#                refuse them. The backup is LARGE_MIB apparent and takes
#                almost no disk (the CLI tests: cheap in CI).
#
# Writes OUTDIR/large-small.qubes and OUTDIR/small-private.img (what "small"
# restores to); the passphrase is "qubes".
set -euo pipefail
export LC_ALL=C TZ=UTC
[ $# -eq 4 ] || { echo "usage: $0 OUTDIR LARGE_MIB SMALL_MIB genuine|placeholder" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
large_mib=$2 small_mib=$3 mode=$4
case $mode in genuine|placeholder) ;; *) echo "$0: mode is genuine or placeholder" >&2; exit 2 ;; esac
PASS=qubes
ID=20261207T120000-2323
CHUNK=$((100 << 20))
SCRYPT=(--logN 10 -r 8 -p 1)
B=$OUT/build
rm -rf "$B"; mkdir -p "$B/stage/vm5" "$B/stage/vm6" "$B/src/vm5" "$B/src/vm6"
members=()

enc() {         # enc NAME PLAINTEXT: the chunk's passphrase binds the backup-id and its name
    printf '%s\n' "$ID!$1!$PASS" | scrypt enc -P "${SCRYPT[@]}" "$2" "$B/stage/$1.enc"
}
chunks() {      # chunks NAME INNER: the inner archive cut into 100 MiB chunks, each sealed in an envelope
    local name=$1 i=0 p
    split -b "$CHUNK" -d -a 3 "$2" "$B/piece."
    rm -f "$2"
    for piece in "$B"/piece.*; do
        p=$name.$(printf %03d "$i")
        enc "$p" "$piece"
        rm -f "$piece"
        members+=("$p.enc")
        i=$((i + 1))
    done
}
placeholders() { # placeholders NAME SIZE: chunks of an inner archive of SIZE bytes, each a hole of an envelope's size
    local name=$1 size=$2 i=0 n p
    while [ "$size" -gt 0 ]; do
        n=$(( size < CHUNK ? size : CHUNK ))
        p=$name.$(printf %03d "$i")
        # An envelope is its plaintext plus 128 bytes (96 of header, 32 of MAC).
        members+=("hole:$p.enc:$((n + 128))")
        size=$((size - n)) i=$((i + 1))
    done
}
gnu_tar() {     # gnu_tar PATH > inner archive, as the R4 writer's tar would make it (without --sparse)
    tar -c --format=gnu --owner=root:0 --group=root:0 -C "$B/src" "$1"
}

printf 'version=4\nencrypted=True\ncompressed=False\nhmac-algorithm=scrypt\nbackup-id=%s\n' "$ID" > "$B/stage/backup-header"
printf '%s\n' "backup-header!$PASS" | scrypt enc -P "${SCRYPT[@]}" "$B/stage/backup-header" "$B/stage/backup-header.hmac"
members+=(backup-header backup-header.hmac)

domain() {      # domain QID NAME MIB
    cat <<X
    <domain class="AppVM" id="domain-$1">
      <properties>
        <property name="label">label-1</property>
        <property name="name">$2</property>
        <property name="qid">$1</property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm$1/</feature>
        <feature name="backup-size">$(($3 << 20))</feature>
      </features>
      <volume-config>
        <volume name="private" pool="vm-pool" rw="True" save_on_stop="True" size="$(($3 << 20))"/>
      </volume-config>
    </domain>
X
}
{
    printf '<?xml version="1.0" encoding="UTF-8"?>\n<qubes version="3.0">\n'
    printf '  <labels><label color="0xcc0000" id="label-1">red</label></labels>\n  <domains>\n'
    domain 5 large "$large_mib"
    domain 6 small "$small_mib"
    printf '  </domains>\n</qubes>\n'
} > "$B/src/qubes.xml"
gnu_tar qubes.xml > "$B/inner"
chunks qubes.xml "$B/inner"

truncate -s "${large_mib}M" "$B/src/vm5/private.img"
if [ "$mode" = genuine ]; then
    gnu_tar vm5/private.img > "$B/inner"
    chunks vm5/private.img "$B/inner"
else
    # What GNU tar would write: a header block, the data, two zero blocks,
    # padded to its 10,240-byte record.
    placeholders vm5/private.img $(( (512 + (large_mib << 20) + 1024 + 10239) / 10240 * 10240 ))
fi
# Pseudo-random and repeatable: AES-CTR of zeros under a fixed key.
head -c "${small_mib}M" /dev/zero \
    | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 > "$B/src/vm6/private.img"
gnu_tar vm6/private.img > "$B/inner"
chunks vm6/private.img "$B/inner"

# One archive per member. A placeholder's archive is written by Python's
# tarfile, as `tar -cO --posix` would lay it out (PAX header, ustar header,
# data, two zero blocks, 10,240-byte record) but with its data left a hole:
# GNU tar would read and write every zero, seconds per GiB.
: > "$OUT/large-small.qubes"
holes() {       # holes NAME:SIZE... appends their archives
    python3 - "$OUT/large-small.qubes" "$@" <<'PY'
import sys, tarfile
with open(sys.argv[1], 'ab') as f:
    for member in sys.argv[2:]:
        name, size = member.rsplit(':', 1)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uname, info.gname = int(size), 1796040000, 0o644, 'root', 'root'
        info.pax_headers = {'mtime': '1796040000.0'}
        start = f.tell()
        f.write(info.tobuf(tarfile.PAX_FORMAT))
        end = f.tell() + (info.size + 511) // 512 * 512 + 1024
        f.truncate(start + (end - start + 10239) // 10240 * 10240)
        f.seek(0, 2)
PY
}
pending=()
for m in "${members[@]}"; do
    if [ "${m#hole:}" != "$m" ]; then pending+=("${m#hole:}"); continue; fi
    if [ ${#pending[@]} -gt 0 ]; then holes "${pending[@]}"; pending=(); fi
    tar -cO --posix -C "$B/stage" "$m" >> "$OUT/large-small.qubes"
done
if [ ${#pending[@]} -gt 0 ]; then holes "${pending[@]}"; fi
mv "$B/src/vm6/private.img" "$OUT/small-private.img"
rm -rf "$B"
