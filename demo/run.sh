#!/usr/bin/env bash
# Walks through the first steps of the Qubes emergency-restore procedure on a
# bundled sample backup (a genuine version 3 backup made with GNU tar, openssl
# and gzip; passphrase "qubes"), with the qb tools on PATH.
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
     "qb-hmac --verify qubes.xml.000.hmac ... && qb-decrypt -c $QB_CRYPTO_ALGORITHM ... < qubes.xml.000 | qb-decompress -f $QB_COMPRESSION_FILTER | tar -xO"
qb-hmac --verify qubes.xml.000.hmac --passphrase env:QB_DEMO_PASSPHRASE qubes.xml.000
# qb-decrypt derives the key with MD5, as Qubes R2/R3 did (OpenSSL 3 needs -md MD5).
qb-decrypt -c "$QB_CRYPTO_ALGORITHM" --passphrase env:QB_DEMO_PASSPHRASE < qubes.xml.000 \
    | qb-decompress -f "$QB_COMPRESSION_FILTER" | tar -xO qubes.xml > qubes.xml

step "4b. the same for a version 4 backup: the header's scrypt copy, then qubes.xml bound to the backup-id" \
     "qb-decrypt --scrypt --backup-id ID --name qubes.xml.000 ... | qb-decompress | tar -xO"
mkdir v4 && qb-untar -i -x -C v4 -f "$here/Tests/Fixtures/v4-gzip.qubes" backup-header backup-header.hmac qubes.xml.000.enc
id=$(qb-header --verify v4/backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE --get backup-id v4/backup-header)
echo "backup-id $id"
qb-decrypt --scrypt --backup-id "$id" --name qubes.xml.000 --passphrase env:QB_DEMO_PASSPHRASE v4/qubes.xml.000.enc \
    | qb-decompress -f gzip | tar -xO qubes.xml | qb-header --vms

step "5. find the VMs in the backup" "qb-header --vms qubes.xml"
qb-header --vms qubes.xml

step "6. restore the VM 'work' (vm3/): verify every chunk, then one stream through decrypt, decompress and a safe, sparse extraction" \
     "qb-hmac --verify ... ; cat vm3/private.img.??? | qb-decrypt | qb-decompress -f gzip | qb-untar -x -C restored"
qb-untar -i -x -f "$backup" 'vm3/'
for f in vm3/*.???; do qb-hmac --verify "$f.hmac" --passphrase env:QB_DEMO_PASSPHRASE "$f"; done
mkdir restored
for file in private.img firewall.xml notes.txt; do
    cat vm3/$file.??? | qb-decrypt --passphrase env:QB_DEMO_PASSPHRASE | qb-decompress -f gzip | qb-untar -x -C restored
done
ls -ls restored/vm3
echo "(private.img: 2 MiB apparent, only its data blocks allocated)"

step "a tampered header is refused" "qb-header --verify ... (one byte changed)"
sed -i 's/gzip/bzip2/' backup-header
if qb-header --verify backup-header.hmac --passphrase env:QB_DEMO_PASSPHRASE backup-header; then
    echo "demo: the tampered header was accepted" >&2; exit 1
else
    echo "(refused with status $?, as it must be)"
fi
