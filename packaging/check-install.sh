#!/bin/bash
# make install puts the tools, their man pages and their completions under
# DESTDIR, every tool says the version, and make uninstall takes them away.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$top/VERSION")
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail() { echo "check-install: $*" >&2; exit 1; }
make -C "$top" -s install DESTDIR="$dest" PREFIX=/usr > /dev/null
for t in qb-untar qb-hmac qb-decrypt qb-decompress qb-header qb-restore qb-fs; do
    [ "$("$dest/usr/bin/$t" --version)" = "$version" ] || fail "$t --version is not $version"
    [ -f "$dest/usr/share/man/man1/$t.1" ] || fail "no man page for $t"
    bash -n "$dest/usr/share/bash-completion/completions/$t" || fail "no valid bash completion for $t"
    grep -q -- "--passphrase\|--list\|--filter\|--check\|--vms\|--extract" "$dest/usr/share/bash-completion/completions/$t" || fail "the bash completion of $t names none of its options"
    [ -s "$dest/usr/share/zsh/site-functions/_$t" ] || fail "no zsh completion for $t"
    [ -s "$dest/usr/share/fish/vendor_completions.d/$t.fish" ] || fail "no fish completion for $t"
done
[ "$("$dest/usr/bin/qb" restore --version)" = "$version" ] || fail "qb restore --version is not $version"
make -C "$top" -s uninstall DESTDIR="$dest" PREFIX=/usr > /dev/null
left=$(find "$dest" -type f)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "install: ok (tools, man pages, completions; uninstall removes them)"
