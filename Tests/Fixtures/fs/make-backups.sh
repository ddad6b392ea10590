#!/bin/bash
# make-backups.sh OUTDIR — build genuine Qubes backups whose VM volumes are real ext4 filesystems:
#
#   OUTDIR/v4-fs-gzip.qubes     R4 format, gzip: AppVM "work" (vm3/private.img, ext4) and
#                               TemplateVM "tpl" (vm2/root.img: GPT disk, ext4 in partition 3;
#                               vm2/private.img: ext4)
#   OUTDIR/v3-fs-gzip.qubes     R3 format, aes-256-cbc + gzip, HMAC-SHA512: "work" (same private.img)
#   OUTDIR/v4-fs-damaged.qubes  valid, fully authenticated R4 backup of "work" whose private.img
#                               has one broken inode (home/user/Documents/broken.txt, checksum 0x1234)
#   OUTDIR/manifest-entries.json  the manifest.json entries of the three (merge-manifest.py adds them)
#   OUTDIR/build/               source trees (src-*), images, staging; verify-backups.sh uses them
#
# Only Debian tools and python3's standard library: GNU tar, gzip, openssl, scrypt, mke2fs, debugfs,
# sfdisk, cp. The images, inner archives and compressed streams are reproducible (fixed UUIDs,
# hash seeds, times, owners; gzip reads stdin so its header has no name or time); the salts of
# openssl and scrypt are random, so the .qubes files differ from run to run.
# Written the way Qubes writes (FORMAT.md §3, §4.1, §5, §6, §8): every member is its own
# `tar -cO --posix` archive; 100 KiB chunks (real Qubes: 100 MiB); scrypt logN 10, r 8, p 1.
set -euo pipefail
export LC_ALL=C.UTF-8 TZ=UTC
umask 022
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=$(cd "$HERE/.." && pwd)
PY=(python3 "$HERE/fsfixture.py")
export MKE2FS_CONFIG="$FIX/ext/mke2fs.conf"   # Debian's defaults, pinned
export E2FSPROGS_FAKE_TIME=1434369600          # 2015-06-15 12:00:00 UTC

# make-backups.sh --volume IMG CHUNK OUTFILE: a v4 gzip backup of "work" alone whose
# vm3/private.img is IMG, in chunks of CHUNK bytes (before encryption), written as
# Qubes writes it (the tests of qb-restore --list-files and --files --path).
VOLUME=
if [ "${1:-}" = --volume ]; then
    [ $# -eq 4 ] || { echo "usage: $0 --volume IMG CHUNK OUTFILE" >&2; exit 2; }
    VOLUME=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
    VOLUME_CHUNK=$3
    VOLUME_OUT=$(basename "$4")
    set -- "$(dirname "$4")"
fi
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR | $0 --volume IMG CHUNK OUTFILE" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
B=$OUT/build${VOLUME:+-$VOLUME_OUT}
rm -rf "$B"; mkdir -p "$B"

PASS=qubes
CHUNK=${VOLUME_CHUNK:-102400}
SCRYPT_OPTS=(--logN "${QB_SCRYPT_LOGN:-10}" -r 8 -p 1)   # QB_SCRYPT_LOGN=20: Qubes' cost (bench/files.sh)
STAGE_TIME=@1796040000          # 2026-11-30 12:00:00 UTC: mtime of everything staged for a backup

die() { echo "make-backups.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- filesystem images
mkfs_ext4() {   # mkfs_ext4 IMG SRC LABEL ID [-E extra] [BLOCKS]: ext4 from SRC, fixed UUID/seed
    local img=$1 src=$2 label=$3 id=$4; shift 4
    local eopts="root_owner=0:0,hash_seed=0ddba11a-0000-4000-8000-0000000000$id"
    if [ "${1:-}" = -E ]; then eopts="$eopts,$2"; shift 2; fi
    mke2fs -q -F -t ext4 -b 4096 -N 1024 -L "$label" -U "5ca1ab1e-0000-4000-8000-0000000000$id" \
        -E "$eopts" -d "$src" "$img" "$@"
}
fixups() {      # fixups IMG SRC: fixed owners and times inside the image (debugfs -w)
    local out
    out=$("${PY[@]}" fixups "$2" | debugfs -w -f - "$1" 2>&1) || die "debugfs fixups on $1: $out"
    if printf '%s\n' "$out" | grep -v '^debugfs [0-9]' | grep -v '^debugfs: ' | grep -q .; then
        die "debugfs fixups on $1 reported: $out"
    fi
}
dig() {         # zero blocks become holes (mke2fs leaves allocated, unwritten space, e.g. the journal)
    cp --sparse=always "$1" "$1.tmp"
    mv "$1.tmp" "$1"
    touch -d "$STAGE_TIME" "$1"
}
private_img() { # private_img IMG SRC MIB ID : bare ext4, as a Qubes private volume
    truncate -s "${3}M" "$1"
    mkfs_ext4 "$1" "$2" private "$4"
    fixups "$1" "$2"
}
root_img() {    # root_img IMG SRC MIB : GPT disk like a Qubes template's root volume, ext4 in p3
    local img=$1 src=$2 mib=$3 start sectors
    truncate -s "${mib}M" "$img"
    sfdisk -q --no-reread --no-tell-kernel "$img" >/dev/null < "$FIX/ext/qubes-root-gpt.sfdisk"
    read -r start sectors < <(sfdisk --json "$img" | python3 -c 'import json, sys
p = json.load(sys.stdin)["partitiontable"]["partitions"][2]
print(p["start"], p["size"])')
    [ "$start" = 6144 ] || die "partition 3 of $img starts at $start"
    ROOT_OFFSET=$((start * 512))
    mkfs_ext4 "$img" "$src" root b2 -E "offset=$ROOT_OFFSET" "$((sectors / 8))"
    fixups "$img?offset=$ROOT_OFFSET" "$src"
    [ "$(sfdisk --json "$img" | python3 -c 'import json, sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][2]["start"])')" = "$start" ] \
        || die "mke2fs damaged the partition table of $img"
}

if [ -z "$VOLUME" ]; then
"${PY[@]}" tree work "$B/src-work"
"${PY[@]}" tree damaged "$B/src-damaged"
"${PY[@]}" tree tpl-root "$B/src-tpl-root"
"${PY[@]}" tree tpl-private "$B/src-tpl-private"
mkdir -p "$B/img/work" "$B/img/tpl" "$B/img/damaged"
private_img "$B/img/work/private.img" "$B/src-work" 16 a1
private_img "$B/img/tpl/private.img" "$B/src-tpl-private" 8 b1
root_img "$B/img/tpl/root.img" "$B/src-tpl-root" 24
private_img "$B/img/damaged/private.img" "$B/src-damaged" 16 a1
out=$(debugfs -w -R "sif /home/user/Documents/broken.txt checksum 0x1234" "$B/img/damaged/private.img" 2>&1) \
    || die "debugfs: $out"
debugfs -n -R "stat /home/user/Documents/broken.txt" "$B/img/damaged/private.img" 2>&1 | grep -q 'Inode checksum: 0x00001234' \
    || die "broken.txt's inode checksum was not set"
for f in "$B"/img/*/*.img; do dig "$f"; done
printf '<firewall><rules/></firewall>\n' > "$B/img/firewall.xml"
touch -d "$STAGE_TIME" "$B/img/firewall.xml"
fi

# ---------------------------------------------------------------- backup writers
# inner archive of a file with GNU tar, as the R3 and R4 writers run it (FORMAT.md §8.1)
gnu_tar() {     # gnu_tar DIR BASENAME SUBDIR [--dereference]
    local dir=$1 base=$2 subdir=$3; shift 3
    tar -Pc --sparse --format=gnu --owner=root:0 --group=root:0 -C "$dir" "$@" \
        --xform="s:^$base:$subdir\\0:" "$base"
}
append() {      # append STAGE RELPATH: one member = one `tar -cO --posix` archive
    touch -d "$STAGE_TIME" "$1/$2"
    tar -cO --posix -C "$1" "$2" >> "$BACKUP"
}
nchunks() {     # the writers start a new chunk before they know whether data remains
    echo $(( $(stat -c %s "$1") / CHUNK + 1 ))
}
meta() { printf '%s\n' "$*" >> "$META"; }

v4_begin() {    # v4_begin NAME BACKUP_ID
    BACKUP=$OUT/$1; BACKUP_ID=$2; STAGE=$B/stage-${1%.qubes}; META=$B/meta-${1%.qubes}
    rm -f "$BACKUP" "$META"; rm -rf "$STAGE"; mkdir -p "$STAGE"
    meta "backup $1 4 $BACKUP_ID"
    printf 'version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=%s\n' \
        "$BACKUP_ID" > "$STAGE/backup-header"
    printf '%s\n' "backup-header!$PASS" | scrypt enc -P "${SCRYPT_OPTS[@]}" "$STAGE/backup-header" "$STAGE/backup-header.hmac"
    append "$STAGE" backup-header
    append "$STAGE" backup-header.hmac
}
v4_stream() {   # v4_stream NAME (subdir/name) < inner tar : gzip, cut, scrypt, append
    local name=$1 comp=$B/comp n i p
    gzip -c > "$comp"
    n=$(nchunks "$comp")
    mkdir -p "$STAGE/$(dirname "$name")"
    for ((i = 0; i < n; i++)); do
        p=$name.$(printf %03d "$i")
        dd if="$comp" bs=$CHUNK skip="$i" count=1 status=none > "$B/chunk"
        printf '%s\n' "$BACKUP_ID!$p!$PASS" | scrypt enc -P "${SCRYPT_OPTS[@]}" "$B/chunk" "$STAGE/$p.enc"
        append "$STAGE" "$p.enc"
    done
    meta "chunks $name $n"
}
v4_volume() {   # v4_volume VM SUBDIR IMG PID : a volume through Qubes' sparse tar writer
    local vm=$1 subdir=$2 img=$3 pid=$4 name=$2$(basename "$3")
    "${PY[@]}" sparse-tar "$img" "$name" "$pid" | v4_stream "$name"
    meta "file $vm $name $img"
}
v4_file() {     # v4_file VM SUBDIR FILE : a small file through GNU tar
    local vm=$1 subdir=$2 f=$3 name=$2$(basename "$3")
    gnu_tar "$(dirname "$f")" "$(basename "$f")" "$subdir" --dereference | v4_stream "$name"
    meta "file $vm $name $f"
}

v3_begin() {    # v3_begin NAME
    BACKUP=$OUT/$1; STAGE=$B/stage-${1%.qubes}; META=$B/meta-${1%.qubes}
    rm -f "$BACKUP" "$META"; rm -rf "$STAGE"; mkdir -p "$STAGE"
    meta "backup $1 3 -"
    printf 'version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n' \
        > "$STAGE/backup-header"
    v3_hmac backup-header
    append "$STAGE" backup-header
    append "$STAGE" backup-header.hmac
}
v3_hmac() {     # the OpenSSL 1.0 line "(stdin)= hex" that real R2/R3 backups carry
    openssl dgst -sha512 -hmac "$PASS" < "$STAGE/$1" | sed 's/^.*(stdin)= /(stdin)= /' > "$STAGE/$1.hmac"
    grep -qx '(stdin)= [0-9a-f]\{128\}' "$STAGE/$1.hmac" || die "bad hmac line for $1"
}
v3_stream() {   # v3_stream NAME < inner tar : gzip, one openssl enc over the stream, cut, HMAC
    local name=$1 enc=$B/enc n i p
    gzip -c | openssl enc -e -aes-256-cbc -md MD5 -pass "pass:$PASS" 2>/dev/null > "$enc"
    [ "$(head -c 8 "$enc")" = Salted__ ] || die "openssl enc failed for $name"
    n=$(nchunks "$enc")
    mkdir -p "$STAGE/$(dirname "$name")"
    for ((i = 0; i < n; i++)); do
        p=$name.$(printf %03d "$i")
        dd if="$enc" bs=$CHUNK skip="$i" count=1 status=none > "$STAGE/$p"
        v3_hmac "$p"
        append "$STAGE" "$p"
        append "$STAGE" "$p.hmac"
    done
    meta "chunks $name $n"
}
v3_file() {     # v3_file VM SUBDIR FILE : R3 archives images with GNU tar --sparse too
    local vm=$1 subdir=$2 f=$3 name=$2$(basename "$3")
    gnu_tar "$(dirname "$f")" "$(basename "$f")" "$subdir" --dereference | v3_stream "$name"
    meta "file $vm $name $f"
}
qubes_xml() {   # qubes_xml FILE : inner archive of qubes.xml (empty SUBDIR) — v4 or v3 stream
    touch -d "$STAGE_TIME" "$1"
    gnu_tar "$(dirname "$1")" qubes.xml "" | "$2" qubes.xml
    meta "xml $1"
}

# ---------------------------------------------------------------- qubes.xml (core3, R4)
LABELS='  <labels>
    <label color="0xcc0000" id="label-1">red</label>
    <label color="0xf57900" id="label-2">orange</label>
    <label color="0xedd400" id="label-3">yellow</label>
    <label color="0x73d216" id="label-4">green</label>
    <label color="0x555753" id="label-5">gray</label>
    <label color="0x3465a4" id="label-6">blue</label>
    <label color="0x75507b" id="label-7">purple</label>
    <label color="0x000000" id="label-8">black</label>
  </labels>
  <pools>
    <pool dir_path="/var/lib/qubes" driver="file" name="varlibqubes" revisions_to_keep="1"/>
    <pool dir_path="/var/lib/qubes/vm-kernels" driver="linux-kernel" name="linux-kernel"/>
    <pool driver="lvm_thin" name="vm-pool" revisions_to_keep="2" thin_pool="vm-pool" volume_group="qubes_dom0"/>
  </pools>
  <properties>
    <property name="default_kernel">6.6.63-1.qubes.fc37.x86_64</property>
    <property name="default_pool">vm-pool</property>
    <property name="default_template">tpl</property>
  </properties>'
feature_set() { # feature_set CONTENT PATH SIZE
    if [ -n "$1" ]; then
        printf '        <feature name="backup-content">1</feature>\n        <feature name="backup-path">%s</feature>\n        <feature name="backup-size">%s</feature>\n' "$2" "$3"
    else
        printf '        <feature name="backup-content"></feature>\n'
    fi
}
dom_work() {    # dom_work IN_BACKUP
    cat <<X
    <domain class="AppVM" id="domain-3">
      <properties>
        <property name="label">label-4</property>
        <property name="name">work</property>
        <property name="qid">3</property>
        <property name="template">tpl</property>
        <property name="uuid">5ca1ab1e-0000-4000-8000-00000000000f</property>
      </properties>
      <features>
$(feature_set "$1" vm3/ 16777246)
      </features>
      <devices class="pci"/>
      <devices class="usb"/>
      <tags>
        <tag name="created-by-dom0"/>
      </tags>
      <volume-config>
        <volume name="root" pool="vm-pool" revisions_to_keep="0" rw="True" size="25165824" snap_on_start="True" source="qubes_dom0/vm-tpl-root" vid="qubes_dom0/vm-work-root"/>
        <volume name="private" pool="vm-pool" revisions_to_keep="2" rw="True" save_on_stop="True" size="16777216" vid="qubes_dom0/vm-work-private"/>
        <volume name="volatile" pool="vm-pool" revisions_to_keep="0" rw="True" size="12884901888" vid="qubes_dom0/vm-work-volatile"/>
        <volume name="kernel" pool="linux-kernel" revisions_to_keep="0" rw="False" snap_on_start="True" source="6.6.63-1.qubes.fc37.x86_64" vid="6.6.63-1.qubes.fc37.x86_64"/>
      </volume-config>
    </domain>
X
}
dom_tpl() {     # dom_tpl IN_BACKUP
    cat <<X
    <domain class="TemplateVM" id="domain-2">
      <properties>
        <property name="label">label-8</property>
        <property name="name">tpl</property>
        <property name="qid">2</property>
        <property name="uuid">5ca1ab1e-0000-4000-8000-00000000000e</property>
      </properties>
      <features>
$(feature_set "$1" vm2/ 33554432)
      </features>
      <devices class="pci"/>
      <devices class="usb"/>
      <tags>
        <tag name="created-by-dom0"/>
      </tags>
      <volume-config>
        <volume name="root" pool="vm-pool" revisions_to_keep="2" rw="True" save_on_stop="True" size="25165824" vid="qubes_dom0/vm-tpl-root"/>
        <volume name="private" pool="vm-pool" revisions_to_keep="2" rw="True" save_on_stop="True" size="8388608" vid="qubes_dom0/vm-tpl-private"/>
        <volume name="volatile" pool="vm-pool" revisions_to_keep="0" rw="True" size="10737418240" vid="qubes_dom0/vm-tpl-volatile"/>
        <volume name="kernel" pool="linux-kernel" revisions_to_keep="0" rw="False" snap_on_start="True" source="6.6.63-1.qubes.fc37.x86_64" vid="6.6.63-1.qubes.fc37.x86_64"/>
      </volume-config>
    </domain>
X
}
dom0() {
    cat <<'X'
    <domain class="AdminVM" id="domain-0">
      <properties>
        <property name="label">label-8</property>
        <property name="uuid">00000000-0000-0000-0000-000000000000</property>
      </properties>
      <features>
        <feature name="backup-content"></feature>
      </features>
      <tags/>
    </domain>
X
}
core3() {       # core3 TPL_IN WORK_IN > qubes.xml
    printf '<?xml version=\x271.0\x27 encoding=\x27UTF-8\x27?>\n<qubes version="3.0">\n%s\n  <domains>\n' "$LABELS"
    dom0; dom_tpl "$1"; dom_work "$2"
    printf '  </domains>\n</qubes>\n'
}

if [ -n "$VOLUME" ]; then
    mkdir -p "$B/xml"
    core3 "" 1 > "$B/xml/qubes.xml"
    v4_begin "$VOLUME_OUT" 20261207T120000-2626
    qubes_xml "$B/xml/qubes.xml" v4_stream
    mkdir -p "$B/img"
    cp --sparse=always "$VOLUME" "$B/img/private.img"
    v4_volume work vm3/ "$B/img/private.img" 4253
    rm -rf "$B"
    exit 0
fi

# ---------------------------------------------------------------- 1. v4-fs-gzip.qubes
mkdir -p "$B/xml/v4" "$B/xml/v3" "$B/xml/damaged"
core3 1 1 > "$B/xml/v4/qubes.xml"
v4_begin v4-fs-gzip.qubes 20261130T120000-4242
qubes_xml "$B/xml/v4/qubes.xml" v4_stream
meta "vm tpl vm2/"
v4_volume tpl vm2/ "$B/img/tpl/root.img" 4251
v4_volume tpl vm2/ "$B/img/tpl/private.img" 4252
meta "fs tpl root.img 3 $B/src-tpl-root"
meta "fs tpl private.img - $B/src-tpl-private"
meta "vm work vm3/"
v4_volume work vm3/ "$B/img/work/private.img" 4253
v4_file work vm3/ "$B/img/firewall.xml"
meta "fs work private.img - $B/src-work"

# ---------------------------------------------------------------- 2. v3-fs-gzip.qubes (core2)
cat > "$B/xml/v3/qubes.xml" <<'X'
<?xml version='1.0' encoding='UTF-8'?>
<QubesVmCollection clockvm="0" default_fw_netvm="none" default_kernel="4.4.14-11" default_netvm="none" default_template="2" updatevm="0">
  <QubesAdminVm backup_content="False" backup_path="" backup_size="0" conf_file="dom0.conf" debug="False" default_user="user" dir_path="/var/lib/qubes/servicevms/dom0" dispvm_netvm="none" include_in_backups="True" installed_by_rpm="False" internal="False" label="black" name="dom0" netvm_qid="none" qid="0" uses_default_netvm="True"/>
  <QubesTemplateVm backup_content="False" backup_path="" backup_size="0" conf_file="tpl.conf" debug="False" default_user="user" dir_path="/var/lib/qubes/vm-templates/tpl" dispvm_netvm="none" include_in_backups="True" installed_by_rpm="True" internal="False" kernel="4.4.14-11" kernelopts="nopat" label="black" maxmem="4000" memory="400" name="tpl" netvm_qid="none" qid="2" qrexec_timeout="60" template_qid="none" uses_default_kernel="True" uses_default_kernelopts="True" uses_default_netvm="True" vcpus="2"/>
  <QubesAppVm backup_content="True" backup_path="vm3" backup_size="16777246" conf_file="work.conf" debug="False" default_user="user" dir_path="/var/lib/qubes/appvms/work" dispvm_netvm="none" include_in_backups="True" installed_by_rpm="False" internal="False" kernel="4.4.14-11" kernelopts="nopat" label="green" maxmem="4000" memory="400" name="work" netvm_qid="none" qid="3" qrexec_timeout="60" template_qid="2" uses_default_kernel="True" uses_default_kernelopts="True" uses_default_netvm="True" vcpus="2"/>
</QubesVmCollection>
X
v3_begin v3-fs-gzip.qubes
qubes_xml "$B/xml/v3/qubes.xml" v3_stream
meta "vm work vm3/"
v3_file work vm3/ "$B/img/work/private.img"
v3_file work vm3/ "$B/img/firewall.xml"
meta "fs work private.img - $B/src-work"

# ---------------------------------------------------------------- 3. v4-fs-damaged.qubes
core3 "" 1 > "$B/xml/damaged/qubes.xml"
v4_begin v4-fs-damaged.qubes 20261130T120500-4243
qubes_xml "$B/xml/damaged/qubes.xml" v4_stream
meta "vm work vm3/"
v4_volume work vm3/ "$B/img/damaged/private.img" 4254
v4_file work vm3/ "$B/img/firewall.xml"
meta "fs work private.img - $B/src-damaged home/user/Documents/broken.txt"

# ---------------------------------------------------------------- manifest entries
python3 - "$B" "$OUT/manifest-entries.json" "$CHUNK" "$PASS" "$HERE/fsfixture.py" <<'PY'
import importlib.util, json, sys
b, out, chunk, pw, helper = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
spec = importlib.util.spec_from_file_location('fsfixture', helper)
fx = importlib.util.module_from_spec(spec); spec.loader.exec_module(fx)
entries = []
for tag in ('v4-fs-gzip', 'v3-fs-gzip', 'v4-fs-damaged'):
    e = None
    for line in open('%s/meta-%s' % (b, tag)):
        w = line.split()
        if w[0] == 'backup':
            v = int(w[2])
            e = {'file': w[1], 'valid': True, 'version': v, 'passphrase': pw,
                 'backup_id': None if w[3] == '-' else w[3], 'encrypted': True,
                 'compression': 'gzip', 'chunk_size': chunk, 'chunks': {},
                 'hmac_format': 'scrypt' if v == 4 else 'openssl-1.0 "(stdin)= hex"',
                 'expected': {}}
        elif w[0] == 'chunks':
            e['chunks'][w[1]] = int(w[2])
        elif w[0] == 'xml':
            fe = fx.file_entry(w[1])
            e['expected']['qubes.xml'] = {'size': fe['size'], 'sha256': fe['sha256']}
        elif w[0] == 'vm':
            e['expected'][w[1]] = {'subdir': w[2], 'files': {}}
        elif w[0] == 'file':
            e['expected'][w[1]]['files'][w[2]] = fx.file_entry(w[3])
        elif w[0] == 'fs':
            vm, vol, part, src, damaged = w[1], w[2], w[3], w[4], w[5:]
            fs = {'volume': vol, 'partition': None if part == '-' else int(part),
                  'files': fx.listing(src, set(damaged))}
            if damaged:
                fs['damaged'] = damaged
            ve = e['expected'][vm]
            if 'filesystem' not in ve:
                ve['filesystem'] = fs          # the VM's main filesystem (root.img of a template)
            else:
                ve.setdefault('other_filesystems', []).append(fs)
    entries.append(e)
with open(out, 'w') as f:
    json.dump(entries, f, indent=1, ensure_ascii=False)
    f.write('\n')
PY
ls -l "$OUT"/*.qubes
