#!/bin/bash
# make-image.sh KIND SRC IMG   — build an ext2/3/4 test image of kind KIND from the tree SRC
# make-image.sh --list         — print the kinds, one a line: "KIND<TAB>description"
#
# Plain kinds must compare equal to SRC after extraction (compare-tree.py SRC OUT).
# Special kinds (unwritten, dirty-journal, cycle, corrupt-inode, huge-size) change the
# image after mke2fs; each writes IMG.expected (key=value lines) describing what a
# reader must find. gpt/mbr print "offset=BYTES" (the filesystem's byte offset) on stdout
# and also write it to IMG.expected.
# Needs only e2fsprogs (mke2fs, debugfs, e2fsck), sfdisk and python3; no root.
set -euo pipefail
export LC_ALL=C.UTF-8 TZ=UTC
HERE=$(cd "$(dirname "$0")" && pwd)
# A fixed mke2fs.conf (copy of Debian's) so the host's /etc/mke2fs.conf cannot change defaults.
export MKE2FS_CONFIG="$HERE/mke2fs.conf"
export E2FSPROGS_FAKE_TIME=1434369600      # superblock times: 2015-06-15 12:00:00 UTC
UUID=5ca1ab1e-0000-4000-8000-00000000e474
SEED=0ddba11a-0000-4000-8000-00000000e474

KINDS='ext2	ext2: block maps (direct/indirect/double/triple), 1 KiB blocks, 128-byte inodes, no journal
ext3	ext3: journal, block maps, 4 KiB blocks
ext4	ext4 default: extents, metadata_csum, 64bit, flex_bg, 256-byte inodes, 4 KiB blocks
ext4-1k	ext4 with 1 KiB blocks (extents, metadata_csum, 64bit)
ext4-64k	ext4 with 64 KiB blocks, no journal
ext4-no64	ext4 -O ^64bit,^metadata_csum,uninit_bg: 32-byte group descriptors, gdt_csum (crc16)
ext4-inline	ext4 -O inline_data: small files and directories stored in the inode
ext4-seed	ext4 -O metadata_csum_seed,orphan_file: checksums seeded from s_checksum_seed
ext4-htree	ext4 then e2fsck -fyD: /bigdir (3000 entries) and others are hashed (htree) directories
ext4-128	ext4 -I 128: 128-byte inodes (no extra fields: no nanoseconds, no crtime, 16-bit inode csum)
ext4-casefold	ext4 -O casefold (utf8 encoding; directories are not +F, so names are stored as given)
gpt	disk image, GPT with 3 partitions, ext4 in partition 3 (Qubes template root.img layout)
mbr	disk image, DOS label, ext4 in partition 1
unwritten	ext4 + /unwritten: 64 fallocated (unwritten) blocks over non-zero garbage, size 200000
dirty-journal	ext4 with a committed, unreplayed journal transaction rewriting /sizes/hello.txt data block
cycle	ext4 where /a/b/loop is a second hard link to directory /a (a cycle)
corrupt-inode	ext4 with /sizes/size-4097 inode checksum broken and /sizes/size-4096 extent out of range
huge-size	ext4 where /sizes/size-61 has i_size 2^60'

die() { echo "make-image.sh: $*" >&2; exit 1; }
has() { grep -c "$@" >/dev/null; }   # like grep -q, but reads all input (no SIGPIPE under pipefail)

if [ "${1:-}" = --list ]; then printf '%s\n' "$KINDS"; exit 0; fi
[ $# -eq 3 ] || { echo "usage: $0 KIND SRC IMG | $0 --list" >&2; exit 2; }
KIND=$1 SRC=$2 IMG=$3
[ -d "$SRC" ] || die "$SRC: not a directory"
printf '%s\n' "$KINDS" | cut -f1 | has -xF -- "$KIND" || die "unknown kind '$KIND' (see --list)"
rm -f "$IMG" "$IMG.expected"

SIZE_MB=96                 # apparent size of a filesystem image; sparse on disk
EOPTS="root_owner=0:0,hash_seed=$SEED"
MKFS=(mke2fs -q -F -U "$UUID" -N 8192 -L qb-test -d "$SRC")

mkfs() {   # mkfs IMG [mke2fs options...] ; makes a SIZE_MB filesystem
    local img=$1; shift
    # 4 KiB blocks unless the kind says otherwise (mke2fs.conf would pick 1 KiB: "small" type)
    case " $* " in *" -b "*) ;; *) set -- -b 4096 "$@" ;; esac
    truncate -s "${SIZE_MB}M" "$img"
    "${MKFS[@]}" -E "$EOPTS" "$@" "$img"
}
dbg() {    # dbg IMG COMMAND... ; run debugfs read-only, fail on any error message
    local img=$1; shift
    local out; out=$(debugfs "$img" -R "$*" 2>&1) || die "debugfs -R '$*' failed: $out"
    printf '%s\n' "$out" | sed 1d         # drop "debugfs 1.47.0 (5-Feb-2023)"
}
dbgw() {   # dbgw IMG <<< script ; run a debugfs -w script, fail if any command printed an error
    local img=$1 out
    out=$(debugfs -w -f - "$img" 2>&1) || die "debugfs -w failed: $out"
    if printf '%s\n' "$out" | grep -v '^debugfs [0-9]' | grep -v '^debugfs: ' | grep -v '^Allocated inode: ' | has .; then
        die "debugfs -w reported: $out"
    fi
}
blocks_of() { dbg "$1" "blocks $2" | tr -s ' \n' ' ' | sed 's/ $//'; }
bsize() { dumpe2fs -h "$1" 2>/dev/null | awk -F: '/^Block size/ {gsub(/ /,"",$2); print $2}'; }
expect() { printf '%s\n' "$@" >> "$IMG.expected"; }

case $KIND in
ext2)          mkfs "$IMG" -t ext2 -b 1024 -I 128 ;;
ext3)          mkfs "$IMG" -t ext3 -b 4096 ;;
ext4)          mkfs "$IMG" -t ext4 ;;
ext4-1k)       mkfs "$IMG" -t ext4 -b 1024 ;;
ext4-64k)      mkfs "$IMG" -t ext4 -b 65536 -O ^has_journal ;;
ext4-no64)     mkfs "$IMG" -t ext4 -O ^64bit,^metadata_csum,uninit_bg ;;
ext4-inline)   mkfs "$IMG" -t ext4 -O inline_data ;;
ext4-seed)     mkfs "$IMG" -t ext4 -O metadata_csum_seed,orphan_file ;;
ext4-128)      mkfs "$IMG" -t ext4 -I 128 ;;
ext4-casefold) mkfs "$IMG" -t ext4 -O casefold ;;
ext4-htree)
    mkfs "$IMG" -t ext4
    rc=0; e2fsck -fyD "$IMG" >/dev/null 2>&1 || rc=$?
    [ $rc -le 1 ] || die "e2fsck -fyD exited $rc"
    dbg "$IMG" "htree /bigdir" | has 'Number of entries' || die "/bigdir is not indexed after e2fsck -fyD"
    ;;
gpt|mbr)
    # 1 MiB alignment; gpt: 1 MiB "EFI", 1 MiB "BIOS boot", rest Linux; mbr: one Linux partition
    DISK_MB=$((SIZE_MB + 4))
    truncate -s "${DISK_MB}M" "$IMG"
    if [ "$KIND" = gpt ]; then
        sfdisk -q --no-reread --no-tell-kernel "$IMG" >/dev/null < "$HERE/qubes-root-gpt.sfdisk"
        PART=3
    else
        sfdisk -q --no-reread --no-tell-kernel "$IMG" >/dev/null <<SF
label: dos
label-id: 0x5ca1ab1e
unit: sectors
start=2048, type=83, bootable
SF
        PART=1
    fi
    read -r START SECTORS < <(sfdisk --json "$IMG" | python3 -c 'import json, sys
p = json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1]) - 1]
print(p["start"], p["size"])' "$PART")
    [ -n "$START" ] && [ -n "$SECTORS" ] || die "cannot read partition $PART of $IMG"
    OFFSET=$((START * 512))
    "${MKFS[@]}" -t ext4 -b 4096 -E "$EOPTS,offset=$OFFSET" "$IMG" "$((SECTORS / 8))" \
        || die "mke2fs -E offset=$OFFSET failed"
    FSB=$(dumpe2fs -h "$IMG?offset=$OFFSET" 2>/dev/null | awk -F: '/^Block count/ {gsub(/ /,"",$2); print $2}')
    [ $((FSB * 4096)) -le $((SECTORS * 512)) ] || die "filesystem ($FSB blocks) larger than partition $PART"
    # mke2fs must not have touched the partition table
    [ "$(sfdisk --json "$IMG" | python3 -c 'import json, sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1]) - 1]["start"])' "$PART")" = "$START" ] \
        || die "partition table damaged"
    expect "partition=$PART" "offset=$OFFSET" "partition_bytes=$((SECTORS * 512))" "fs_blocks=$FSB (4096 bytes)"
    echo "offset=$OFFSET"
    ;;
unwritten)
    mkfs "$IMG" -t ext4
    : > "$IMG.empty"
    dbgw "$IMG" <<DBG
write $IMG.empty unwritten
fallocate /unwritten 0 63
sif /unwritten size 200000
sif /unwritten mtime 20150615120000
DBG
    rm -f "$IMG.empty"
    dbg "$IMG" "ex /unwritten" | has 'Uninit' || die "/unwritten has no unwritten extent"
    # Fill the unwritten blocks with garbage: a reader that ignores the flag returns 0xA5 bytes.
    BS=$(bsize "$IMG")
    python3 - "$IMG" "$BS" $(blocks_of "$IMG" /unwritten) <<'PY'
import sys
img, bs, blocks = sys.argv[1], int(sys.argv[2]), [int(b) for b in sys.argv[3:]]
assert len(blocks) == 64, blocks
with open(img, 'r+b') as f:
    for b in blocks:
        f.seek(b * bs); f.write(b'\xa5' * bs)
PY
    expect "path=/unwritten" "size=200000" "content=200000 zero bytes (sha256 $(head -c 200000 /dev/zero | sha256sum | cut -d' ' -f1))" \
           "note=its 64 blocks are unwritten extents whose disk blocks hold 0xA5 garbage" \
           "extra=/unwritten is not in SRC (compare with --ignore unwritten)"
    ;;
dirty-journal)
    mkfs "$IMG" -t ext4
    BS=$(bsize "$IMG")
    B=$(blocks_of "$IMG" /sizes/hello.txt)
    [[ $B =~ ^[0-9]+$ ]] || die "/sizes/hello.txt should have exactly one block, has '$B'"
    # the journaled block: "JOURNALED!\n" (11 bytes, hello.txt's size) then 0x4A ('J') padding
    python3 -c 'import sys; bs=int(sys.argv[1]); d=b"JOURNALED!\n"; sys.stdout.buffer.write(d + b"J" * (bs - len(d)))' "$BS" > "$IMG.jblock"
    dbgw "$IMG" <<DBG
jo
jw -b $B $IMG.jblock
jc
DBG
    rm -f "$IMG.jblock"
    dumpe2fs -h "$IMG" 2>/dev/null | has 'needs_recovery' || die "needs_recovery is not set"
    # verify the expectation: replay a copy with e2fsck and read the file back
    cp --sparse=always "$IMG" "$IMG.check"
    rc=0; e2fsck -fy "$IMG.check" >/dev/null 2>&1 || rc=$?
    [ $rc -le 1 ] || { rm -f "$IMG.check"; die "e2fsck -fy of the replayed copy exited $rc"; }
    got=$(debugfs -R "cat /sizes/hello.txt" "$IMG.check" 2>/dev/null)
    rm -f "$IMG.check"
    [ "$got" = "JOURNALED!" ] || die "after replay /sizes/hello.txt is '$got', expected JOURNALED!"
    before=$(debugfs -R "cat /sizes/hello.txt" "$IMG" 2>/dev/null)
    [ "$before" = "hello, ext" ] || die "before replay /sizes/hello.txt is '$before'"
    expect "path=/sizes/hello.txt" "block=$B" \
           "after_replay=JOURNALED!\\n (11 bytes, sha256 $(printf 'JOURNALED!\n' | sha256sum | cut -d' ' -f1))" \
           "without_replay=hello, ext\\n (what SRC has)" \
           "note=needs_recovery is set; one committed transaction (1 data block) in the internal journal"
    ;;
cycle)
    [ -d "$SRC/a/b" ] || die "$SRC/a/b missing (make-tree.sh makes it)"
    mkfs "$IMG" -t ext4
    dbgw "$IMG" <<DBG
link /a /a/b/loop
DBG
    A=$(dbg "$IMG" "stat /a" | awk '/^Inode:/ {print $2; exit}')
    L=$(dbg "$IMG" "stat /a/b/loop" | awk '/^Inode:/ {print $2; exit}')
    [ "$A" = "$L" ] || die "/a/b/loop is inode $L, /a is $A"
    expect "path=/a/b/loop" "inode=$A (the inode of /a, a directory)" \
           "error=directory cycle: /a/b/loop is directory /a again; must be refused or skipped, never followed forever"
    ;;
corrupt-inode)
    mkfs "$IMG" -t ext4
    # (1) break the inode checksum of /sizes/size-4097
    I1=$(dbg "$IMG" "stat /sizes/size-4097" | awk '/^Inode:/ {print $2; exit}')
    # (2) point the first extent of /sizes/size-4096 past the end of the filesystem
    #     (i_block[5] is ee_start_lo of the first extent; checksum is recomputed, so valid)
    I2=$(dbg "$IMG" "stat /sizes/size-4096" | awk '/^Inode:/ {print $2; exit}')
    dbgw "$IMG" <<DBG
sif /sizes/size-4096 block[5] 0x7ffffff0
sif /sizes/size-4097 checksum 0x1234
DBG
    expect "path=/sizes/size-4097" "inode=$I1" "error=inode checksum mismatch (stored 0x1234)" \
           "path=/sizes/size-4096" "inode=$I2" "error=extent physical block 0x7ffffff0 beyond the end of the filesystem (valid checksum)" \
           "rest=every other entry reads back as in SRC"
    ;;
huge-size)
    mkfs "$IMG" -t ext4
    dbgw "$IMG" <<DBG
sif /sizes/size-61 size 0x1000000000000000
DBG
    dbg "$IMG" "stat /sizes/size-61" | has 'Size: 1152921504606846976' || die "size not set"
    expect "path=/sizes/size-61" "size=1152921504606846976 (2^60)" \
           "error=i_size beyond the largest file an ext4 with 4 KiB blocks can hold (16 TiB); only the first 61 bytes are mapped" \
           "note=e2fsck would complain; the reader must refuse the file (or at least not try to write 1 EiB)"
    ;;
esac
