#!/bin/sh
# Writes the release's copyright file: qb's own licence (packaging/copyright),
# then the notice of everything the release program links in or loads, each
# as its source ships it, so that nothing is copied by hand and a newer
# library brings its own notice:
#   - the C libraries linked in (the archives static-libs.sh put in
#     SCRATCH/static-libs) and ISA-L (SYSLIBDIR/libisal.so.2): the
#     copyright file of the Debian package that installed each;
#   - the Swift runtime, and Foundation if linked: the licence of the
#     toolchain that SWIFT runs, found through `SWIFT -print-target-info`;
#   - swift-argument-parser: LICENSE.txt of the checkout in SCRATCH.
#   notices.sh QB SCRATCH SYSLIBDIR SWIFT > copyright
# Each notice is one section, opened by a line `==== NAME (how): source`;
# check-dist.sh looks for every NAME. The Swift licences are the Apache
# License 2.0 with the Runtime Library Exception: their Apache text is
# checked to be LICENSE's, word for word, and given by reference (Debian
# policy: no full Apache text in a copyright file), their exception in full.
set -eu
qb=$1 scratch=$2 syslib=$3 swift=$4
top=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "notices.sh: $*" >&2; exit 1; }

# debian_notice NAME HOW FILE: the copyright file of the package owning FILE.
debian_notice() {
    package=$(dpkg-query -S "$3" 2>/dev/null | sed -n '1s/:.*//p')
    [ -n "$package" ] || fail "no Debian package owns $3"
    copyright=/usr/share/doc/$package/copyright
    [ -s "$copyright" ] || fail "$copyright of $package (for $1) is missing"
    echo
    echo "==== $1 ($2): Debian package $package $(dpkg-query -W -f='${Version}' "$package"), $copyright"
    # As it is, with a final newline if it lacks one.
    sed '$a\' "$copyright"
}

# words: a text with its runs of white space made one space, for comparing
# licence texts that differ only in indentation.
words() { tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }

# apache_with_exception NAME HOW SOURCE FILE: FILE must be the Apache License
# 2.0 (as LICENSE) followed by the Runtime Library Exception.
apache_with_exception() {
    [ -s "$4" ] || fail "$4 (the licence of $1) is missing"
    grep -q '^## Runtime Library Exception' "$4" || fail "$4 has no Runtime Library Exception; read it and update notices.sh"
    [ "$(sed '/^## Runtime Library Exception/,$d' "$4" | words)" = "$(words < "$top/LICENSE")" ] \
        || fail "$4 is not the Apache License 2.0 of LICENSE followed by an exception; read it and update notices.sh"
    echo
    echo "==== $1 ($2): $3"
    echo "Licensed under the Apache License, Version 2.0, with the Runtime Library"
    echo "Exception below. The licence's text, word for word, is LICENSE beside"
    echo "this file in the release tarball, and /usr/share/common-licenses/Apache-2.0"
    echo "on Debian."
    sed -n '/^## Runtime Library Exception/,$p' "$4"
}

cat "$top/packaging/copyright"

found=0
for archive in "$scratch"/static-libs/lib*.a; do
    [ -e "$archive" ] || continue
    name=$(basename "$archive" .a)
    debian_notice "$name" "linked in" "$(readlink "$archive" || echo "$archive")"
    found=$((found + 1))
done
[ $found -gt 0 ] || fail "no archive in $scratch/static-libs: run static-libs.sh first"
debian_notice libisal "loaded: lib/libisal.so.2 in the tarball, the libisal2 package for the .deb" "$syslib/libisal.so.2"

# The toolchain that built QB: its resource directory is usr/lib/swift,
# its licence usr/share/swift/LICENSE.txt.
resources=$("$swift" -print-target-info | sed -n 's/.*"runtimeResourcePath": *"\(.*\)".*/\1/p')
[ -n "$resources" ] || fail "$swift -print-target-info names no runtimeResourcePath"
toolchain=$("$swift" -print-target-info | sed -n 's/.*"swiftCompilerTag": *"\(.*\)".*/\1/p')
# Which Swift libraries are linked in, from the module names in QB's
# mangled symbols. FoundationInternationalization would bring ICU, whose
# licence the toolchain does not ship.
symbols=$(mktemp)
trap 'rm -f "$symbols"' EXIT
nm "$qb" > "$symbols"
grep -q '30FoundationInternationalization' "$symbols" \
    && fail "$qb links FoundationInternationalization, and with it ICU: add ICU's notice"
linked="the standard library"
grep -q 'swift_task_create' "$symbols" && linked="$linked, Concurrency"
grep -q 's8Dispatch' "$symbols" && linked="$linked, Dispatch"
grep -q '20FoundationEssentials' "$symbols" && linked="$linked, FoundationEssentials"
grep -q '10Foundation[0-9A-Z_]' "$symbols" && linked="$linked, Foundation"
apache_with_exception swift "linked in: $linked" "the ${toolchain:-Swift} toolchain's share/swift/LICENSE.txt" \
    "$resources/../../share/swift/LICENSE.txt"

parser=$scratch/checkouts/swift-argument-parser
version=$(git -C "$parser" describe --tags 2>/dev/null || echo "at an unknown version")
apache_with_exception swift-argument-parser "linked in" "LICENSE.txt of swift-argument-parser $version" "$parser/LICENSE.txt"
