#!/bin/bash
# What make check-dist tests: the release tarball runs where there is no
# Swift and no -dev package, and the .deb installs, runs and goes away.
#   check-dist.sh TARBALL DEB
# The tarball is unpacked in a scratch directory and run, by absolute path,
# from another one, under `env -i PATH=/usr/bin:/bin`: no variable of the
# build (LD_LIBRARY_PATH, the toolchain's PATH) reaches it. Every library it
# needs must be glibc's, the compiler runtime's, or in its own lib/.
set -euo pipefail
tarball=$(realpath "$1") deb=$(realpath "$2")
top=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$top/VERSION")
fixture=$top/Tests/Fixtures/v4-gzip.qubes
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "check-dist: $*" >&2; exit 1; }
scrubbed() { env -i PATH=/usr/bin:/bin "$@"; }

echo "== $tarball"
mkdir "$scratch/unpacked" "$scratch/elsewhere"
tar -xzf "$tarball" -C "$scratch/unpacked"
root=$scratch/unpacked/$(basename "$tarball" .tar.gz)
[ -d "$root" ] || fail "the tarball has no top directory $(basename "$root")"
(cd "$root" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match the files"
for t in qb qb-untar qb-hmac qb-decrypt qb-decompress qb-header qb-restore qb-fs; do
    [ -x "$root/bin/$t" ] || fail "bin/$t is missing"
    [ -f "$root/share/bash-completion/completions/${t}" ] || [ "$t" = qb ] || fail "no bash completion for $t"
    [ -s "$root/share/zsh/site-functions/_${t}" ] || [ "$t" = qb ] || fail "no zsh completion for $t"
    [ -s "$root/share/fish/vendor_completions.d/${t}.fish" ] || [ "$t" = qb ] || fail "no fish completion for $t"
    [ -f "$root/share/man/man1/$t.1" ] || fail "no man page for $t"
done
for f in "$root"/share/bash-completion/completions/*; do bash -n "$f" || fail "$f is not valid bash"; done
[ -f "$root/share/man/man5/qubes-backup.5" ] && [ -f "$root/README.md" ] || fail "qubes-backup.5 or README.md is missing"

# Licences: qb's own (LICENSE, the Apache License 2.0) and, in the
# copyright file, a notice for everything bin/qb links in or loads, each
# one section opened by `==== NAME (`; packaging/notices.sh writes them.
if [ -f /usr/share/common-licenses/Apache-2.0 ]; then
    cmp -s "$top/LICENSE" /usr/share/common-licenses/Apache-2.0 || fail "LICENSE is not the text of the Apache License 2.0"
fi
[ -f "$root/share/doc/qb/LICENSE" ] || fail "share/doc/qb/LICENSE is missing"
cmp -s "$root/share/doc/qb/LICENSE" "$top/LICENSE" || fail "share/doc/qb/LICENSE is not LICENSE"
notices="libcrypto libz libbz2 liblzma libzstd libscrypt-kdf libisal swift swift-argument-parser"
# check_notices WHAT FILE: FILE states qb's licence and has every notice; a
# Debian package's notice is that package's copyright file, where this
# machine has it.
check_notices() {
    local what=$1 file=$2 name body source
    [ -s "$file" ] || fail "$what is missing"
    grep -q '^License: Apache-2.0$' "$file" || fail "$what does not give qb's licence, Apache-2.0"
    for name in $notices; do
        grep -q "^==== $name (" "$file" || fail "$what has no notice for $name"
        body=$(awk -v n="$name" '/^==== /{on = index($0, "==== " n " (") == 1; next} on' "$file")
        grep -qi 'copyright\|license' <<< "$body" || fail "$what: the notice for $name says no copyright or licence"
        source=$(sed -n "s|^==== $name (.*, \(/usr/share/doc/[^/]*/copyright\)\$|\1|p" "$file")
        if [ -n "$source" ] && [ -f "$source" ]; then
            [ "$body" = "$(cat "$source")" ] || fail "$what: the notice for $name is not $source"
        fi
    done
}
check_notices share/doc/qb/copyright "$root/share/doc/qb/copyright"

# Libraries: glibc's, libgcc_s and libstdc++, or carried in lib/.
allowed='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux\.so\.2|ld-linux-aarch64\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6)$'
for elf in "$root"/bin/qb "$root"/lib/*; do
    for lib in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [[ $lib =~ $allowed ]] || [ -f "$root/lib/$lib" ] || fail "$(basename "$elf") needs $lib, which is neither glibc's nor in lib/"
    done
    runpath=$(readelf -d "$elf" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
    for p in ${runpath//:/ }; do
        case $p in '$ORIGIN'|'$ORIGIN/'*) ;; *) fail "$(basename "$elf") has the run path $p, outside the tarball";; esac
    done
done
# ld.so resolves lib/'s libraries to the tarball's copies, not the system's.
for lib in "$root"/lib/*; do
    where=$(cd "$scratch/elsewhere" && scrubbed LD_TRACE_LOADED_OBJECTS=1 "$root/bin/qb" | awk -v l="$(basename "$lib")" '$1 == l { print $3 }')
    [ "$(realpath "$where")" = "$(realpath "$lib")" ] || fail "$(basename "$lib") resolves to '$where', not the tarball's"
done
glibc=$(objdump -T "$root/bin/qb" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1)
grep -q "glibc ${glibc#GLIBC_}" "$top/README.md" || fail "the binary needs $glibc; README.md does not say glibc ${glibc#GLIBC_}"
echo "needs $glibc; NEEDED: $(readelf -d "$root/bin/qb" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"

# Runs from elsewhere, with nothing of the build's environment.
cd "$scratch/elsewhere"
for t in qb qb-untar qb-hmac qb-decrypt qb-decompress qb-header qb-restore qb-fs; do
    [ "$(scrubbed "$root/bin/$t" --version)" = "$version" ] || fail "$t --version does not say $version"
done
# Several times: the tests run debug builds, and this is the one place an
# optimised build runs; a use-after-free it once had crashed one run in two.
for run in 1 2 3 4 5 6; do
    scrubbed P=qubes "$root/bin/qb-restore" --verify-only --passphrase env:P "$fixture" > verify.out \
        || fail "qb-restore --verify-only failed (run $run): $(cat verify.out)"
done
scrubbed P=qubes "$root/bin/qb-restore" -C restored --passphrase env:P "$fixture" work > restore.out 2>&1 \
    || fail "the restore failed: $(cat restore.out)"
[ -s restored/work/private.img ] || fail "the restore wrote no restored/work/private.img"
# The same restore as the development build's, byte for byte.
dev=$(cd "$top" && swift build --show-bin-path)
if [ -x "$dev/qb-restore" ]; then
    P=qubes "$dev/qb-restore" -C restored-dev --passphrase env:P "$fixture" work > /dev/null 2>&1
    diff -r restored restored-dev > /dev/null || fail "the tarball's restore differs from the development build's"
fi
# Wrong passphrase: status 1, and the message names the tool.
set +e
scrubbed P=wrong "$root/bin/qb-restore" --verify-only --passphrase env:P "$fixture" > /dev/null 2> wrong.err
status=$?
set -e
[ $status = 1 ] || fail "a wrong passphrase gave status $status, not 1"
grep -q '^qb-restore: ' wrong.err || fail "the error does not begin 'qb-restore: ': $(cat wrong.err)"
# gzip through ISA-L, the library the tarball carries.
head -c 3000000 /dev/urandom > data && gzip -c data > data.gz
scrubbed "$root/bin/qb" decompress -f gzip < data.gz | cmp - data || fail "qb decompress -f gzip changed the data"
echo "tarball: ok ($(wc -c < "$tarball") bytes; bin/qb $(wc -c < "$root/bin/qb") bytes)"

echo "== $deb"
dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/share/doc/qb/copyright > "$scratch/deb-copyright" \
    || fail "the .deb has no /usr/share/doc/qb/copyright"
check_notices "the .deb's /usr/share/doc/qb/copyright" "$scratch/deb-copyright"
cmp -s "$scratch/deb-copyright" "$root/share/doc/qb/copyright" || fail "the .deb's copyright file is not the tarball's"
[ "$(id -u)" = 0 ] || { echo "check-dist: not root: the .deb is not installed (dpkg -i needs root)"; exit 0; }
if dpkg-query -W -f='${Status}' qb 2>/dev/null | grep -q 'install ok installed'; then
    fail "a qb package is installed already; check-dist does not replace it"
fi
dpkg-deb --info "$deb" | sed -n 's/^ Depends: /Depends: /p'
dpkg-deb --contents "$deb" | awk '{print $6}' | grep -q '^./usr/share/bash-completion/completions/qb-restore$' || fail "the .deb has no bash completion"
if command -v lintian > /dev/null; then
    lintian --fail-on error,warning "$deb" || fail "lintian"
fi
dpkg -i "$deb" > /dev/null
installed=$(cd "$scratch/elsewhere" && scrubbed /usr/bin/qb-restore --version) || true
verified=ok
scrubbed P=qubes /usr/bin/qb-restore --verify-only --passphrase env:P "$fixture" > /dev/null 2>&1 || verified=failed
dpkg -r qb > /dev/null
[ "$installed" = "$version" ] || fail "the installed /usr/bin/qb-restore --version said '$installed', not $version"
[ $verified = ok ] || fail "the installed qb-restore --verify-only failed"
[ ! -e /usr/bin/qb-restore ] && [ ! -e /usr/bin/qb ] || fail "dpkg -r left /usr/bin/qb or qb-restore behind"
dpkg-query -W -f='${Status}' qb 2>/dev/null | grep -q 'install ok installed' && fail "qb is still installed"
echo "deb: ok ($(wc -c < "$deb") bytes; installed, ran, removed)"
