#!/usr/bin/env bash
# Compares the branch timings of two builds of vers on this host, in one
# run: the builds take turns (A, B, A, B, ...), each with a daemon and a
# VM of its own (the default 512 MiB VM, warmed by `ls -lR /usr`), four
# single branches and one --count 4, so that the host's drift shows in
# both. Prints versd's figures of every branch and the p50 of each build.
#
#   scripts/branch-ab.sh A_BIN B_BIN [ROUNDS]
#
# A_BIN and B_BIN hold vers, versd and vers-agent (for the build before a
# change: git worktree add /tmp/base COMMIT, then build it as setup.sh
# does into /tmp/base/bin). ROUNDS defaults to 3. Each build has an image
# directory of its own, made from VERS_IMAGE_DIR's by hard links, so that
# two different agents do not rebuild the images at every turn: an image
# the agent makes stale is built once, before the rounds.
set -euo pipefail
a=$(realpath "$1") b=$(realpath "$2") rounds=${3:-3}
images="${VERS_IMAGE_DIR:-/var/lib/vers/images}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for side in a b; do
	mkdir -p "$work/img-$side"
	cp -al "$images/." "$work/img-$side/"
	(
		export VERS_HOME=$work/warm-$side VERS_IMAGE_DIR=$work/img-$side PATH=${!side}:$PATH
		vers image build >/dev/null
		kill "$(cat "$VERS_HOME/versd.pid")" 2>/dev/null || true
	)
	rm -rf "$work/warm-$side"
done

one() { # side home: one turn; appends versd's branch lines to home.lines
	local bin=${!1} home=$2 proj="$work/project"
	rm -rf "$proj" && mkdir -p "$proj"
	(
		cd "$proj"
		export VERS_HOME=$home PATH=$bin:$PATH VERS_IMAGE_DIR=$work/img-$1
		vers init >/dev/null
		vers run --vm-alias root >/dev/null
		vers execute "ls -lR /usr >/dev/null"
		for i in 1 2 3 4; do
			vers branch --alias "k$i" >/dev/null
			vers execute "k$i" true
		done
		vers branch --alias c --count 4 >/dev/null
		vers execute c-4 true
		vers kill -r root >/dev/null
		kill "$(cat "$home/versd.pid")"
	)
	grep -o 'children=[0-9]* ram=[a-z]* pause_ms=[0-9]* first_ready_ms=[0-9]*.*' "$home/versd.log" >>"$home.lines"
	rm -rf "$home"
}

p50() { # key file: p50 of key=N over the single-child branches
	grep '^children=1 ' "$2" | grep -o "$1=[0-9]*" | cut -d= -f2 | sort -n |
		awk '{v[NR]=$1} END {if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2); else print "-"}'
}

for r in $(seq "$rounds"); do
	for side in a b; do
		echo "==> round $r, build ${side^^}"
		one "$side" "$work/$side"
		tail -n 5 "$work/$side.lines"
	done
done
for k in pause_ms first_ready_ms prepare_ms freeze_ms first_qemu_ms first_agent_ms; do
	printf '%-16s A %6s   B %6s\n' "$k" "$(p50 "$k" "$work/a.lines")" "$(p50 "$k" "$work/b.lines")"
done
