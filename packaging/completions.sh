#!/bin/sh
# Writes the shell completions of every tool, as swift-argument-parser
# generates them, running the tools found in BINDIR.
#   completions.sh BINDIR BASHDIR ZSHDIR FISHDIR
set -eu
bin=$1 bashdir=$2 zshdir=$3 fishdir=$4
mkdir -p "$bashdir" "$zshdir" "$fishdir"
for t in qb-untar qb-hmac qb-decrypt qb-decompress qb-header qb-restore qb-fs; do
    # bash-completion sources the file: no #! line (lintian: bash-completion-with-hashbang).
    "$bin/$t" --generate-completion-script bash | sed '1{/^#!/d}' > "$bashdir/$t"
    "$bin/$t" --generate-completion-script zsh > "$zshdir/_$t"
    "$bin/$t" --generate-completion-script fish > "$fishdir/$t.fish"
done
