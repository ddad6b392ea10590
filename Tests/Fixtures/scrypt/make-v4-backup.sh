#!/usr/bin/env bash
# A small genuine Qubes R4 (version 4) backup with chosen scrypt parameters,
# written the way Qubes writes one (GNU tar, gzip, the real `scrypt enc`),
# for the tests of key derivation's memory and parameters (issue 24).
#
#   make-v4-backup.sh OUT.qubes 'LOGN R P' ['LOGN R P' ...]
#
# The first parameter set encrypts backup-header.hmac and qubes.xml.000;
# each further one encrypts one chunk of vm3/private.img (VM "work"), so
# chunks can differ as they may in a real backup (scrypt enc chooses N and
# p afresh for each chunk from the machine's speed and memory). With one
# set only, the image is one chunk under it. The passphrase is $P. The
# image is random (it does not compress): 48 KiB per chunk, in OUT's
# directory as private.img for comparison. The envelopes are made in
# parallel: at logN 21 each takes 2 GiB and a few seconds.
set -euo pipefail
out=$1; shift
[ $# -ge 1 ] || { echo "usage: $0 OUT.qubes 'LOGN R P' ['LOGN R P' ...]" >&2; exit 2; }
: "${P:?the passphrase is read from \$P}"
first=$1
chunk_sets=("$@"); [ $# -gt 1 ] && chunk_sets=("${@:2}")
id=20261124T101500-2424
dir=$(dirname "$out")
work=$(mktemp -d "$dir/make-v4.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/vm3" "$work/stage/vm3"
head -c $((48 * 1024 * ${#chunk_sets[@]})) /dev/urandom > "$work/src/vm3/private.img"
cp "$work/src/vm3/private.img" "$dir/private.img"
cat > "$work/src/qubes.xml" <<XML
<QubesVmCollection><QubesAppVm qid="3" name="work" template_qid="1" label="green" backup_content="True" backup_path="vm3" backup_size="1"/></QubesVmCollection>
XML
printf 'version=4\nhmac-algorithm=scrypt\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nbackup-id=%s\n' "$id" > "$work/stage/backup-header"
tar -C "$work/src" -cf - qubes.xml | gzip > "$work/stage/qubes.xml.000"
tar -C "$work/src" --sparse -cf - vm3/private.img | gzip > "$work/comp"
split -n "${#chunk_sets[@]}" -d -a 3 "$work/comp" "$work/stage/vm3/private.img."

enc() {  # NAME 'LOGN R P' PASSPHRASE-PREFIX : NAME → NAME.enc (or backup-header.hmac)
    local name=$1 target=$1.enc
    read -r logn r p <<< "$2"
    [ "$name" = backup-header ] && target=backup-header.hmac
    printf '%s\n' "$3$P" | scrypt enc -P --logN "$logn" -r "$r" -p "$p" "$work/stage/$name" "$work/stage/$target"
}
pids=()
enc backup-header "$first" 'backup-header!' & pids+=($!)
enc qubes.xml.000 "$first" "$id!qubes.xml.000!" & pids+=($!)
i=0
for set in "${chunk_sets[@]}"; do
    name=vm3/private.img.$(printf %03d $i)
    enc "$name" "$set" "$id!$name!" & pids+=($!)
    i=$((i + 1))
done
for pid in "${pids[@]}"; do wait "$pid"; done
{
    for m in backup-header backup-header.hmac qubes.xml.000.enc; do tar --posix -C "$work/stage" -cf - "$m"; done
    for ((i = 0; i < ${#chunk_sets[@]}; i++)); do tar --posix -C "$work/stage" -cf - "vm3/private.img.$(printf %03d $i).enc"; done
} > "$out"
