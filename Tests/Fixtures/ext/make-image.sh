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
ext4-bigalloc	ext4 -O bigalloc -C 65536: 16 blocks per cluster, groups sized in clusters
ext4-bigalloc-1k	ext4 -b 1024 -O bigalloc -C 16384: superblock in block 1 though s_first_data_block is 0
ext4-meta-bg	ext4 -b 1024 -O ^64bit,meta_bg,sparse_super2,^resize_inode, 33 groups: the last group starts a meta group and holds the last backup superblock
ext3-no-filetype	ext3 then tune2fs -O ^filetype: entries keep their old type bytes, name_len is one byte
ext4-huge-dir	ext4 with /bigdir grown past 64 MiB by debugfs expand (a directory that once held millions of names)
gpt	disk image, GPT with 3 partitions, ext4 in partition 3 (Qubes template root.img layout)
mbr	disk image, DOS label, ext4 in partition 1
unwritten	ext4 + /unwritten: 64 fallocated (unwritten) blocks over non-zero garbage, size 200000
dirty-journal	ext4 with a committed, unreplayed journal transaction rewriting /sizes/hello.txt data block
cycle	ext4 where /a/b/loop is a second hard link to directory /a (a cycle)
corrupt-inode	ext4 with /sizes/size-4097 inode checksum broken and /sizes/size-4096 extent out of range
huge-size	ext4 where /sizes/size-61 has i_size 2^60
journal-root	ext4 whose journal holds, unreplayed, a committed transaction adding /new-in-root (root directory, inode table, bitmaps, descriptors)
journal-resize	ext4 (1 KiB blocks, ^flex_bg) grown from 64 to 96 MiB, with the grow and /grown only in its journal (targets past the old block count)
external-journal	ext4 whose journal is on another device and needs recovery
long-symlink	ext4 with 64 KiB blocks and /long-link, a 5000-byte symlink target (longer than PATH_MAX)
shared-blocks	ext4 where /dup1../dup3 are copies of the inode of /sizes/size-3m and /dupdir of the inode of /bigdir: every block mapped twice
links-count-1	ext4 where /sizes/hello.txt has two more names but a link count of 1
dir-before-inode	ext4 -O ^flex_bg, 12 groups, where the block of directory /symlinks (inode in group 4) is moved to group 0: read as it passes, it comes before its inode
blockmap-bomb	ext2 (4 KiB blocks) with /bomb: triple indirect block whose 1024 entries all name one double indirect block whose entries all name one zero block, i_size 4 TiB, and /sparse-tind: one distinct zero double indirect block, i_size 16 GiB'

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
# verify_replay IMG PATH TEXT: e2fsck -fy on a copy replays the journal, and
# then PATH holds TEXT and the copy is clean; before, PATH is not there.
verify_replay() {
    local rc=0 got
    dbg "$1" "stat $2" 2>&1 | has 'File not found' || die "$2 is on disk before the replay"
    cp --sparse=always "$1" "$1.check"
    e2fsck -fy "$1.check" >/dev/null 2>&1 || rc=$?
    [ $rc -le 1 ] || { rm -f "$1.check"; die "e2fsck -fy of a copy exited $rc"; }
    rc=0; e2fsck -fn "$1.check" >/dev/null 2>&1 || rc=$?
    got=$(debugfs -R "cat $2" "$1.check" 2>/dev/null)
    rm -f "$1.check"
    [ $rc = 0 ] || die "the replayed copy is not clean (e2fsck -fn exited $rc)"
    [ "$got" = "$3" ] || die "after the replay $2 is '$got', not '$3'"
}

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
ext4-bigalloc)     mkfs "$IMG" -t ext4 -O bigalloc -C 65536 ;;
ext4-bigalloc-1k)  mkfs "$IMG" -t ext4 -b 1024 -O bigalloc -C 16384 ;;
ext4-meta-bg)
    # 98303 blocks in groups of 2984: 33 groups, 32 descriptors a block, so
    # group 32 starts the second meta group and, as sparse_super2's last
    # backup group, holds a superblock copy before its descriptor block.
    # 96 inodes a group put the last files' inodes in group 32.
    mkfs "$IMG" -t ext4 -b 1024 -g 2984 -N 3168 -O ^64bit,meta_bg,sparse_super2,^resize_inode
    dumpe2fs -h "$IMG" 2>/dev/null | has '^Backup block groups: *1 32' || die "group 32 is not a backup group"
    dbg "$IMG" "testi <3073>" | has 'is marked in use' || die "no inode in group 32 is in use"
    ;;
ext3-no-filetype)
    mkfs "$IMG" -t ext3
    tune2fs -O ^filetype "$IMG" >/dev/null
    ;;
ext4-huge-dir)
    mkfs "$IMG" -t ext4
    for _ in $(seq 16400); do echo "expand /bigdir"; done | dbgw "$IMG"
    size=$(dbg "$IMG" "stat /bigdir" | sed -n 's/.*Size: \([0-9]*\).*/\1/p' | head -1)
    [ "$size" -gt $((64 << 20)) ] || die "/bigdir is only $size bytes"
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
journal-root)
    mkfs "$IMG" -t ext4
    cp --sparse=always "$IMG" "$IMG.new"
    printf 'written in the last transaction\n' > "$IMG.data"
    # /a/b/leaf is inode 14; the new file takes its number, in the first
    # inode-table block, which also holds the journal inode (8): a reader
    # that caches what it read to find the journal serves leaf's old inode.
    dbg "$IMG" "ncheck 14" | has '/a/b/leaf' || die "/a/b/leaf is not inode 14"
    dbgw "$IMG.new" <<DBG
rm /a/b/leaf
write $IMG.data new-in-root
sif /new-in-root mtime 20150615120000
DBG
    dbg "$IMG.new" "ncheck 14" | has '/new-in-root' || die "/new-in-root did not get inode 14"
    n=$(python3 "$HERE/journal-diff.py" "$IMG" "$IMG.new")
    rm -f "$IMG.new" "$IMG.data"
    verify_replay "$IMG" /new-in-root 'written in the last transaction'
    expect "path=/new-in-root" "content=written in the last transaction\\n" "removed=/a/b/leaf" "journaled_blocks=$n" \
           "note=inode 14 (leaf, then new-in-root) and the root directory change only in the journal; e2fsck -fy gives the same tree"
    ;;
journal-resize)
    # 1 KiB blocks without flex_bg: group 8's bitmaps and inode table lie
    # past the old end, so the journal writes blocks past the old count.
    truncate -s 64M "$IMG"
    "${MKFS[@]}" -E "$EOPTS" -t ext4 -b 1024 -O ^flex_bg "$IMG"
    cp --sparse=always "$IMG" "$IMG.new"
    truncate -s 96M "$IMG.new"
    resize2fs "$IMG.new" >/dev/null 2>&1 || die "resize2fs failed"
    printf 'after the grow\n' > "$IMG.data"
    dbgw "$IMG.new" <<DBG
write $IMG.data grown
sif /grown mtime 20150615120000
DBG
    n=$(python3 "$HERE/journal-diff.py" "$IMG" "$IMG.new")
    rm -f "$IMG.new" "$IMG.data"
    [ "$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Block count/ {print $2+0}')" = 65536 ] || die "the old block count changed"
    verify_replay "$IMG" /grown 'after the grow'
    expect "path=/grown" "content=after the grow\\n" "blocks_before=65536" "blocks_after=98304" "journaled_blocks=$n"
    ;;
external-journal)
    mkfs "$IMG" -t ext4 -O ^has_journal
    # `feature` prints the feature list, which dbgw would take for an error.
    debugfs -w -f - "$IMG" >/dev/null 2>&1 <<DBG
feature has_journal needs_recovery
ssv journal_uuid 5ca1ab1e-0000-4000-8000-00000000beef
ssv journal_dev 0x0811
DBG
    dumpe2fs -h "$IMG" 2>/dev/null | has '^Journal device:[[:space:]]*0x0811' || die "the journal device is not set"
    dumpe2fs -h "$IMG" 2>/dev/null | has 'needs_recovery' || die "needs_recovery is not set"
    expect "journal=external, UUID 5ca1ab1e-0000-4000-8000-00000000beef, device 0x811, needs recovery" \
           "error=the journal cannot be replayed without its device: say so, exit 3, read the rest"
    ;;
long-symlink)
    mkfs "$IMG" -t ext4 -b 65536 -O ^has_journal
    target=$(python3 -c 'print("long/" * 1000, end="")')
    dbgw "$IMG" <<DBG
symlink /long-link $target
DBG
    expect "path=/long-link" "target=5000 bytes (long/ x 1000)" \
           "error=cannot be created on Linux (PATH_MAX 4096): reported, skipped, exit 3; listed all the same"
    ;;
shared-blocks)
    mkfs "$IMG" -t ext4
    : > "$IMG.empty"
    dbgw "$IMG" <<DBG
write $IMG.empty dup1
write $IMG.empty dup2
write $IMG.empty dup3
mkdir dupdir
copy_inode /sizes/size-3m /dup1
copy_inode /sizes/size-3m /dup2
copy_inode /sizes/size-3m /dup3
copy_inode /bigdir /dupdir
DBG
    rm -f "$IMG.empty"
    for i in 1 2 3; do expect "path=/dup$i" "error=maps the blocks of /sizes/size-3m: reported, skipped"; done
    expect "path=/dupdir" "error=maps the blocks of /bigdir: reported, not entered" \
           "rest=every other entry reads back as in SRC; output never exceeds the filesystem's size"
    ;;
links-count-1)
    mkfs "$IMG" -t ext4
    # debugfs's ln adds a name without raising the link count.
    dbgw "$IMG" <<DBG
ln /sizes/hello.txt /hello-again
ln /sizes/hello.txt /links/hello-third
DBG
    dbg "$IMG" "stat /sizes/hello.txt" | has 'Links: 1 ' || die "the link count changed"
    expect "path=/hello-again" "path=/links/hello-third" \
           "note=three names, link count 1: hard links to the first name met, never three copies (e2fsck -fy sets the count to 3)"
    ;;
dir-before-inode)
    mkfs "$IMG" -t ext4 -O ^flex_bg -g 8192
    ino=$(dbg "$IMG" "stat /symlinks" | awk '/^Inode:/ {print $2; exit}')
    ipg=$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Inodes per group/ {print $2+0}')
    [ $(( (ino - 1) / ipg )) -ge 1 ] || die "/symlinks (inode $ino) is in group 0"
    old=$(dbg "$IMG" "ex /symlinks" | awk 'NR == 2 && $5 == $7 {print $8}')
    [ -n "$old" ] || die "/symlinks is not one block"
    new=$(dbg "$IMG" "ffb 1 100" | sed 's/^Free blocks found: //' | tr -d ' ')
    [ "$new" -lt 8192 ] || die "no free block in group 0"
    python3 - "$IMG" "$old" "$new" <<'PY'
import sys
img, old, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(img, 'r+b') as f:
    f.seek(old * 4096); block = f.read(4096)
    f.seek(new * 4096); f.write(block)
PY
    # i_block[5] is the first extent's ee_start_lo; debugfs recomputes the
    # inode's checksum. The block's own checksum is the inode's, unchanged.
    dbgw "$IMG" <<DBG
sif /symlinks block[5] $new
freeb $old
setb $new
DBG
    rc=0; e2fsck -fy "$IMG" >/dev/null 2>&1 || rc=$?   # the groups' free counts
    [ $rc -le 1 ] || die "e2fsck -fy exited $rc"
    rc=0; e2fsck -fn "$IMG" >/dev/null 2>&1 || rc=$?
    [ $rc = 0 ] || die "e2fsck -fn exited $rc"
    expect "path=/symlinks" "block=$new (was $old)" "inode=$ino (group $(( (ino - 1) / ipg )))" \
           "note=a reader of the image as it passes meets the directory's block before its inode: a second pass"
    ;;
blockmap-bomb)
    mkfs "$IMG" -t ext2 -b 4096 -I 128
    : > "$IMG.empty"
    dbgw "$IMG" <<DBG
write $IMG.empty bomb
write $IMG.empty sparse-tind
DBG
    rm -f "$IMG.empty"
    read -r T D I T2 D2 < <(dbg "$IMG" "ffb 5" | sed 's/^Free blocks found: //')
    [ -n "$D2" ] || die "no free blocks"
    python3 - "$IMG" "$T" "$D" "$I" "$T2" "$D2" <<'PY'
import struct, sys
img, t, d, i, t2, d2 = sys.argv[1], *map(int, sys.argv[2:])
bs = 4096
with open(img, 'r+b') as f:
    for block, contents in [(t, struct.pack('<1024I', *[d] * 1024)), (d, struct.pack('<1024I', *[i] * 1024)),
                            (i, bytes(bs)), (t2, struct.pack('<I', d2) + bytes(bs - 4)), (d2, bytes(bs))]:
        f.seek(block * bs)
        f.write(contents)
PY
    dbgw "$IMG" <<DBG
setb $T
setb $D
setb $I
setb $T2
setb $D2
sif /bomb block[TIND] $T
sif /bomb size 0x40000000000
sif /bomb blocks 24
sif /bomb mtime 20150615120000
sif /sparse-tind block[TIND] $T2
sif /sparse-tind size 0x400000000
sif /sparse-tind blocks 16
sif /sparse-tind mtime 20150615120000
DBG
    expect "path=/bomb" "size=4398046511104" "error=its map names block $D more than once: reported at the second time, in one step" \
           "path=/sparse-tind" "size=17179869184" "content=all holes (zeros)"
    ;;
esac
