#!/usr/bin/env python3
"""merge-manifest.py ENTRIES MANIFEST — put the entries made by make-backups.sh into
manifest.json: an entry replaces the valid entry of the same file, or is appended."""
import json
import sys

entries = json.load(open(sys.argv[1]))
path = sys.argv[2]
manifest = json.load(open(path))
fixtures = manifest['fixtures']
for e in entries:
    for i, f in enumerate(fixtures):
        if f['file'] == e['file'] and f.get('valid'):
            fixtures[i] = e
            break
    else:
        fixtures.append(e)
with open(path, 'w') as f:
    json.dump(manifest, f, indent=1, ensure_ascii=False)   # as the file was written: no final newline
