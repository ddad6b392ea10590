#!/bin/bash
# check-dist.sh must fail on a tarball that would not run on a rescue
# machine; this makes such tarballs from the good one and expects each
# refused with its own message.
#   check-dist-refusals.sh TARBALL
set -euo pipefail
tarball=$(realpath "$1")
top=$(cd "$(dirname "$0")/.." && pwd)
name=$(basename "$tarball" .tar.gz)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dev=$(cd "$top" && swift build --show-bin-path)

# expect CASE MESSAGE EDIT: unpack, apply EDIT in the tree, repack, and check
# that check-dist.sh fails saying MESSAGE.
expect() {
    local case=$1 message=$2 edit=$3
    rm -rf "$scratch/t" && mkdir -p "$scratch/t"
    tar -xzf "$tarball" -C "$scratch/t"
    (cd "$scratch/t/$name" && eval "$edit")
    tar -czf "$scratch/$name.tar.gz" -C "$scratch/t" "$name"
    if out=$("$top/packaging/check-dist.sh" "$scratch/$name.tar.gz" /nonexistent.deb 2>&1); then
        echo "check-dist-refusals: $case: check-dist passed" >&2; exit 1
    fi
    grep -q -- "$message" <<< "$out" || { echo "check-dist-refusals: $case: expected '$message', got: $out" >&2; exit 1; }
    echo "refused: $case"
}
# drop_notice NAME: the copyright file without NAME's section.
drop_notice() {
    awk -v n="$1" '/^==== /{skip = index($0, "==== " n " (") == 1} !skip' share/doc/qb/copyright > copyright.new
    mv copyright.new share/doc/qb/copyright
}
resum='find . -type f ! -name SHA256SUMS | sed "s|^\./||" | LC_ALL=C sort | xargs sha256sum > SHA256SUMS'
expect "a file changed after SHA256SUMS" "SHA256SUMS does not match" 'echo x >> README.md'
expect "a tool missing" "bin/qb-fs is missing" "rm bin/qb-fs; $resum"
expect "the licence missing" "share/doc/qb/LICENSE is missing" "rm share/doc/qb/LICENSE; $resum"
expect "a C library's notice missing" "has no notice for libzstd" "drop_notice libzstd; $resum"
expect "the Swift runtime's notice missing" "has no notice for swift" "drop_notice swift; $resum"
expect "a Debian notice changed" "the notice for libcrypto is not /usr/share/doc/" \
    "sed -i 's/^Upstream-Name: OpenSSL\$/Upstream-Name: OpenSSH/' share/doc/qb/copyright; $resum"
expect "a library neither glibc's nor carried" "needs libisal.so.2, which is neither" "rm lib/libisal.so.2; $resum"
if [ -x "$dev/qb" ]; then
    expect "the development build (shared libcrypto, toolchain run path)" "qb needs lib" "cp --remove-destination '$dev/qb' bin/qb; $resum"
else
    echo "check-dist-refusals: no development build of qb in $dev; the dynamically linked case is skipped"
fi
