#!/usr/bin/env bash
# The whole test suite: unit tests, then the end-to-end suite that drives the
# real CLI against real VMs. Images are built once and cached in
# $VERS_IMAGE_DIR (default /var/lib/vers/images).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export VERS_IMAGE_DIR="${VERS_IMAGE_DIR:-/var/lib/vers/images}"
export VERS_BIN="$PWD/bin"
echo "==> building images (cached after the first run)"
# versd builds them; one that this script starts for it is stopped after.
home="${VERS_HOME:-/var/lib/vers}"
running() { [ -f "$home/versd.pid" ] && kill -0 "$(cat "$home/versd.pid")" 2>/dev/null; }
if running; then started=""; else started=1; fi
bin/vers image build
if [ -n "$started" ] && running; then kill "$(cat "$home/versd.pid")"; fi
echo "==> go vet, staticcheck"
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "==> unit tests (with the race detector)"
go test -race -count=1 ./api/... ./client/... ./internal/... ./cmd/... ./test/bench/
echo "==> end-to-end tests (real VMs)"
go test -count=1 -timeout 40m -v ./test/e2e/...
