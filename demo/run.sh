#!/usr/bin/env bash
# Walks through the Qubes emergency-restore procedure, step 1 to step 8, on
# bundled sample backups (genuine version 3 and 4 backups made with GNU tar,
# openssl, scrypt and gzip; passphrase "qubes"; in the last one the VM's
# private.img is a real ext4 filesystem), with the qb tools on PATH.
#
# pipefail: a failing step anywhere in a pipeline must fail the whole
# pipeline, or a tampered chunk could pass as a short but "successful" restore.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
backup=$here/Tests/Fixtures/v3-aes-gzip.qubes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export QB_DEMO_PASSPHRASE=qubes

step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

step "1. take the header, its HMAC and qubes.xml out of the backup" \
     "qb-untar -i -x -f BACKUP backup-header backup-header.hmac 'qubes.xml.*'"
qb-untar -i -x -f "$backup" backup-header backup-header.hmac 'qubes.xml.*'

ls -l

step "2. authenticate the header (the passphrase never goes on the command line)" \
     "qb-hmac --verify backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE backup-header"
qb-hmac --verify backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE backup-header

step "3. read the header, strictly (a filter outside the allow-list is refused: QSB 51)" \
     "qb-header --verify backup-header.hmac --passphrase env:... --shell backup-header"
qb-header --verify backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE --shell backup-header
eval "$(qb-header --verify backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE --shell backup-header)"

step "4. authenticate qubes.xml's chunk, then decrypt and decompress it" \
     "qb-hmac --verify qubes.xml.000.hmac ... && qb-decrypt -c $QB_CRYPTO_ALGORITHM ... < qubes.xml.000 | qb-decompress -f $QB_COMPRESSION_FILTER | qb-untar -O qubes.xml"
qb-hmac --verify qubes.xml.000.hmac --passphrase env:QB_DEMO_PASSPHRASE qubes.xml.000
# qb-decrypt derives the key with MD5, as Qubes R2/R3 did (OpenSSL 3 needs -md MD5).
qb-decrypt -c "$QB_CRYPTO_ALGORITHM" --passphrase env:QB_DEMO_PASSPHRASE < qubes.xml.000 \
    | qb-decompress -f "$QB_COMPRESSION_FILTER" | qb-untar -O qubes.xml > qubes.xml

step "4b. the same for a version 4 backup: the header's scrypt copy, then qubes.xml bound to the backup-id" \
     "qb-decrypt --scrypt --backup-id ID --name qubes.xml.000 ... | qb-decompress -f gzip | qb-untar -O qubes.xml | qb-header --vms"
mkdir v4 && qb-untar -i -x -C v4 -f "$here/Tests/Fixtures/v4-gzip.qubes" backup-header backup-header.hmac qubes.xml.000.enc
id=$(qb-header --verify v4/backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE --get backup-id v4/backup-header)
echo "backup-id $id"
qb-decrypt --scrypt --backup-id "$id" --name qubes.xml.000 --passphrase env:QB_DEMO_PASSPHRASE v4/qubes.xml.000.enc \
    | qb-decompress -f gzip | qb-untar -O qubes.xml | qb-header --vms

step "5. find the VMs in the backup" "qb-header --vms qubes.xml"
qb-header --vms qubes.xml

step "6. restore the VM 'work' (vm3/) as one stream per file: each chunk verified before it is released, then decrypt, decompress and a safe, sparse extraction — no temporary files" \
     "qb-untar -i --tar 'vm3/private.img.[0-9]*' < BACKUP | qb-hmac --check | qb-decrypt | qb-decompress -f gzip | qb-untar -x --within vm3/private.img --strip-components 1 -C by-hand/work"
mkdir -p by-hand/work
for file in private.img firewall.xml notes.txt; do
    qb-untar -i --tar "vm3/$file.[0-9]*" < "$backup" \
        | qb-hmac --check --passphrase env:QB_DEMO_PASSPHRASE \
        | qb-decrypt --passphrase env:QB_DEMO_PASSPHRASE \
        | qb-decompress -f "$QB_COMPRESSION_FILTER" \
        | qb-untar -x --within "vm3/$file" --strip-components 1 -C by-hand/work
done
ls -ls by-hand/work
echo "(private.img: 2 MiB apparent, only its data blocks allocated)"

step "7. all of it in one pass with qb-restore: list, then restore every VM and dom0's home" \
     "qb-restore --list BACKUP; qb-restore --dom0-home -C restored BACKUP"
qb-restore --list --passphrase env:QB_DEMO_PASSPHRASE "$backup"
mkdir restored
# From a pipe, as from another machine: qb-restore never seeks and writes no temporary files.
cat "$backup" | qb-restore --dom0-home -v -C restored --passphrase env:QB_DEMO_PASSPHRASE -
find restored -type f -o -type l | sort
echo "work's image, restored both ways:"
sha256sum by-hand/work/private.img restored/work/private.img

step "8. the same restore as small-tool pipelines, printed, not run" "qb-restore --explain BACKUP work"
qb-restore --explain --passphrase env:QB_DEMO_PASSPHRASE -C restored "$backup" work | sed -n '/vm3\/private.img →/,/^$/p'

step "9. step 8 of the procedure, 'mount the private.img and access your data', without mount or root: a backup whose private.img is a real ext4 volume" \
     "qb-restore -C fs BACKUP work; qb-fs -O fs/work/private.img /home/user/Documents/notes.txt"
fsbackup=$here/Tests/Fixtures/v3-fs-gzip.qubes
mkdir fs
qb-restore -C fs --passphrase env:QB_DEMO_PASSPHRASE "$fsbackup" work
qb-fs --info fs/work/private.img
qb-fs -tv fs/work/private.img /home/user
echo "--- /home/user/Documents/notes.txt, read out of the image:"
qb-fs -O fs/work/private.img /home/user/Documents/notes.txt

step "10. or all of it in one command: restore, then the files of each VM's private volume into DIR/VM/files/" \
     "qb-restore --files --files-only -C one-step BACKUP work"
mkdir one-step
qb-restore --files --files-only -C one-step --passphrase env:QB_DEMO_PASSPHRASE "$fsbackup" work
find one-step -path '*/home/user/*' | sort
cmp one-step/work/files/home/user/Documents/notes.txt <(qb-fs -O fs/work/private.img /home/user/Documents/notes.txt) && echo "(the same bytes both ways)"

step "a tampered header is refused" "qb-header --verify ... (one byte changed)"
sed -i 's/gzip/bzip2/' backup-header
if qb-header --verify backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE backup-header; then
    echo "demo: the tampered header was accepted" >&2; exit 1
else
    echo "(refused with status $?, as it must be)"
fi
