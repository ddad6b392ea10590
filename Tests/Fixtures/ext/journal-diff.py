#!/usr/bin/env python3
"""journal-diff.py OLD NEW — leave in OLD's journal, unreplayed, the change
that turns the ext3/4 image OLD into NEW.

What a VM that crashed or was killed leaves: committed transactions in the
journal that never reached their home blocks, needs_recovery set. Every
block that differs between OLD and NEW (the journal's own blocks left out)
is written into OLD's journal with debugfs (`jo`, `jw -b`, `jc`), in one
committed transaction; nothing is replayed. After this, replaying OLD's
journal (e2fsck -fy, or a mount) gives NEW's blocks.

NEW may be larger than OLD (an online resize, as after `qvm-volume extend`):
OLD is extended to NEW's size and its journal may then write blocks past
OLD's block count. debugfs refuses to journal those, so the superblock's
block count is raised for the journaling and set back afterwards: OLD keeps
its old size on disk and the larger one in its journal.

Needs e2fsprogs (debugfs, dumpe2fs) and python3. Prints the number of
blocks journaled.
"""
import os
import re
import subprocess
import sys
import tempfile


def header(image):
    out = subprocess.run(['dumpe2fs', '-h', image], capture_output=True, text=True, check=True).stdout
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(':')
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def journal_blocks(image):
    """The image's blocks that hold the internal journal (inode 8)."""
    out = subprocess.run(['debugfs', '-R', 'blocks <8>', image], capture_output=True, text=True, check=True).stdout
    return {int(b) for b in out.split()}


def debugfs(image, script):
    r = subprocess.run(['debugfs', '-w', '-f', '-', image], input=script, capture_output=True, text=True)
    noise = [l for l in (r.stdout + r.stderr).splitlines()
             if l.strip() and not l.startswith('debugfs ') and not l.startswith('debugfs: ')]
    # debugfs says this when it switches on checksums for `jo -c`.
    noise = [l for l in noise if not re.match(r'^Setting csum v\d$', l)]
    if r.returncode != 0 or noise:
        sys.exit('journal-diff.py: debugfs failed: ' + ' / '.join(noise or [str(r.returncode)]))


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: journal-diff.py OLD NEW')
    old, new = sys.argv[1], sys.argv[2]
    h = header(old)
    bs = int(h['Block size'])
    old_count = int(h['Block count'])
    new_count = int(header(new)['Block count'])
    skip = journal_blocks(old)
    new_size = os.path.getsize(new)
    if os.path.getsize(old) < new_size:
        os.truncate(old, new_size)
    changed = []
    with open(old, 'rb') as a, open(new, 'rb') as b:
        for n in range(new_size // bs):
            x, y = a.read(bs), b.read(bs)
            if x != y and n not in skip:
                changed.append((n, y))
    if not changed:
        sys.exit('journal-diff.py: the images do not differ')
    checksums = 'metadata_csum' in h.get('Filesystem features', '')
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(old)), suffix='.blocks') as data:
        for _, contents in changed:
            data.write(contents)
        data.flush()
        grow = new_count > old_count
        script = (f'ssv blocks_count {new_count}\n' if grow else '')
        script += 'jo -c\n' if checksums else 'jo\n'
        script += 'jw -b %s %s\n' % (','.join(str(n) for n, _ in changed), data.name)
        script += 'jc\n'
        script += (f'ssv blocks_count {old_count}\n' if grow else '')
        debugfs(old, script)
    if 'needs_recovery' not in header(old).get('Filesystem features', ''):
        sys.exit('journal-diff.py: needs_recovery is not set after journaling')
    print(len(changed))


if __name__ == '__main__':
    main()
