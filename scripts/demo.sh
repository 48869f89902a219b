#!/usr/bin/env bash
# The main job: boots a VM from the default images and runs SQLite in it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export VERS_IMAGE_DIR="${VERS_IMAGE_DIR:-/var/lib/vers/images}"
VERS="$PWD/bin/vers"
work=$(mktemp -d)
alias="demo-$$"
cleanup() { (cd "$work" && "$VERS" kill "$alias" -r >/dev/null 2>&1) || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
cd "$work"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "vers image build"; "$VERS" image build
step "vers init"; "$VERS" init
step "vers run --vm-alias $alias"; time "$VERS" run --vm-alias "$alias"
step "vers execute (sqlite3 creates a database)"
"$VERS" execute "mkdir -p /app/db && sqlite3 /app/db/demo.db \"CREATE TABLE t(x); INSERT INTO t VALUES ('hello from a vers VM');\""
step "vers execute (read it back)"
"$VERS" execute "sqlite3 /app/db/demo.db 'SELECT x FROM t'; uname -r; nproc; free -m | head -2; df -h /"
step "vers connect (script on stdin)"
"$VERS" connect <<'SH'
echo "in the VM as $(whoami) on $(hostname), cwd $(pwd)"
SH
step "vers status"; "$VERS" status
step "vers kill $alias"; "$VERS" kill "$alias"
trap - EXIT; rm -rf "$work"
