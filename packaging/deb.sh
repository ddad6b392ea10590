#!/bin/sh
# Makes the Debian package from the statically linked multi-call qb:
#   deb.sh QB VERSION COPYRIGHT OUTDIR  → OUTDIR/qb_VERSION_ARCH.deb
# The C libraries with a Debian archive are linked in; ISA-L is not carried
# but depended on (libisal2), and the tarball's run path is removed. The
# Depends line is what dpkg-shlibdeps finds the binary needs. COPYRIGHT,
# which notices.sh wrote, is the package's copyright file: qb's licence and
# the notices of everything in the binary (Debian policy puts licences
# there, and the Apache text in /usr/share/common-licenses).
set -eu
qb=$1 version=$2 copyright=$3 out=$4
top=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$out/.deb
rm -rf "$work"
root=$work/qb_${version}_$arch
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" "$root/usr/share/man/man5" "$root/usr/share/doc/qb"
strip --remove-section=.comment --remove-section=.note -o "$root/usr/bin/qb" "$qb"
# Debian's libisal2 is found in the system's library path; $ORIGIN/../lib
# would point at /usr/lib, so the deb's binary has no run path.
patchelf --remove-rpath "$root/usr/bin/qb"
chmod 755 "$root/usr/bin/qb"
for t in qb-untar qb-hmac qb-decrypt qb-decompress qb-header qb-restore qb-fs; do ln -s qb "$root/usr/bin/$t"; done
for m in "$top"/man/*.1; do gzip -9n < "$m" > "$root/usr/share/man/man1/${m##*/}.gz"; done
for m in "$top"/man/*.5; do gzip -9n < "$m" > "$root/usr/share/man/man5/${m##*/}.gz"; done
"$top/packaging/completions.sh" "$root/usr/bin" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
gzip -9n < "$top/README.md" > "$root/usr/share/doc/qb/README.md.gz"
cp "$copyright" "$root/usr/share/doc/qb/copyright"
mkdir -p "$root/usr/share/lintian/overrides"
cp "$top/packaging/lintian-overrides" "$root/usr/share/lintian/overrides/qb"
date=$(date -R -d "@$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)")
printf 'qb (%s) unstable; urgency=medium\n\n  * Release %s (make deb).\n\n -- qb maintainers <maintainers@users.noreply.r-seed-c90e391c.example>  %s\n' \
    "$version" "$version" "$date" | gzip -9n > "$root/usr/share/doc/qb/changelog.gz"
find "$root" -type d -exec chmod 755 {} +
find "$root/usr/share" -type f -exec chmod 644 {} +
# Depends: what the binary links, as dpkg-shlibdeps sees it.
mkdir -p "$work/src/debian"
printf 'Source: qb\n\nPackage: qb\nArchitecture: any\n' > "$work/src/debian/control"
depends=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/bin/qb" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: qb
Version: $version
Architecture: $arch
Maintainer: qb maintainers <maintainers@users.noreply.r-seed-c90e391c.example>
Installed-Size: $size
Depends: $depends
Section: utils
Priority: optional
Description: restore Qubes OS backups without Qubes
 Small Unix tools, one per step of Qubes OS' emergency-restore procedure
 (qb-untar, qb-hmac, qb-decrypt, qb-decompress, qb-header, qb-fs), and
 qb-restore, which does every step in one streaming pass: authenticate,
 decrypt, decompress and extract a VM's volumes, and read the files of
 its ext4 image without root or mount.
CONTROL
(cd "$root" && find usr -type f | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums)
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/qb_${version}_$arch.deb" >/dev/null
rm -rf "$work"
echo "$out/qb_${version}_$arch.deb: $(wc -c < "$out/qb_${version}_$arch.deb") bytes; Depends: $depends"
