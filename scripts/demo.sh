#!/usr/bin/env bash
# The main job: runs the database tutorial on the default images (set up
# SQLite once, branch, apply three migrations in parallel) and measures it
# against the traditional way (a fresh VM and the whole setup per migration).
# Options go to vers-demo: --rows N seeds N extra users/products/orders,
# --prefix P renames the VMs, --skip-traditional runs the tutorial only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export VERS_IMAGE_DIR="${VERS_IMAGE_DIR:-/var/lib/vers/images}"
go build -o bin/vers-demo ./cmd/vers-demo
echo "==> vers image build"
bin/vers image build
# vers-demo kills every VM it made when it ends, also on Ctrl-C or TERM.
exec bin/vers-demo --vers "$PWD/bin/vers" "$@"
