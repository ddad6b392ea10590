#!/bin/sh
# Makes the release link the C libraries statically where Debian ships an
# archive (.a): a directory holding only those archives, and pkg-config stubs
# that put it first in the link's search path. SwiftPM takes the stubs through
# PKG_CONFIG_PATH in place of the system's .pc files, whose
# -L/usr/lib/<arch> would otherwise come first and pick the .so; the libraries
# without a .pc file (bz2, scrypt-kdf) are found there too. ISA-L has no
# archive in Debian and stays a shared library (lib/libisal.so.2 in the
# tarball, the libisal2 package for the .deb).
#   static-libs.sh SCRATCH SYSLIBDIR
set -eu
scratch=$1 syslib=$2
dir=$(cd "$scratch" && pwd)
rm -rf "$dir/static-libs" "$dir/pkgconfig"
mkdir -p "$dir/static-libs" "$dir/pkgconfig"
for l in crypto z bz2 lzma zstd scrypt-kdf; do
    [ -f "$syslib/lib$l.a" ] || { echo "static-libs.sh: $syslib/lib$l.a is missing" >&2; exit 1; }
    ln -s "$syslib/lib$l.a" "$dir/static-libs/lib$l.a"
done
# The pkgConfig names of Package.swift's system-library targets.
for p in libcrypto zlib liblzma libzstd libisal; do
    printf 'Name: %s\nDescription: %s for make dist: static where an archive exists\nVersion: 0\nLibs: -L%s\nCflags:\n' \
        "$p" "$p" "$dir/static-libs" > "$dir/pkgconfig/$p.pc"
done
