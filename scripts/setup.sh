#!/usr/bin/env bash
# Installs what vers needs on a Debian bookworm host (idempotent) and builds
# bin/vers, bin/versd and bin/vers-agent. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# xfsprogs: guest RAM lives on an in-memory XFS, whose reflinks make branching
# share RAM instead of copying it (internal/rampool). passt: each VM's
# user-mode network, which keeps guests off the host's loopback services and
# each other (internal/qemu/passt.go). chromium: the headless browser the web
# UI's end-to-end test drives (test/e2e/ui_test.go).
for pkg in qemu-system-x86 qemu-utils debootstrap e2fsprogs xfsprogs zstd xz-utils ca-certificates procps passt chromium; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	echo "==> installing ${need[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "vers setup: run as root (apt-get install ${need[*]})" >&2
		exit 1
	fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! command -v go >/dev/null; then
	export PATH="$PATH:/usr/local/go/bin"
fi
echo "==> building bin/vers bin/versd bin/vers-agent"
mkdir -p bin
go build -o bin/vers ./cmd/vers
go build -o bin/versd ./cmd/versd
# Static and reproducible (the same bytes from any clone): the images' cache
# key includes the agent. test/e2e builds it with the same flags.
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o bin/vers-agent ./cmd/vers-agent
