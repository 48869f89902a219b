#!/usr/bin/env bash
# Runs the benchmarks of test/bench on real VMs and prints their results.
# Every benchmark measures its own baseline in the same run; quote the ratios.
#
#   VERS_BENCH_COLD=1   also time a cold image build (downloads Debian packages, ~1 min)
#   VERS_BENCH_BOOT_N, VERS_BENCH_EXEC_N, VERS_BENCH_WARM_N, VERS_BENCH_MEM_N,
#   VERS_BENCH_TUNNEL_N iterations (defaults 10, 50, 10, 5, 3)
#   VERS_BENCH_TUNNEL_MIB what one tunnel iteration sends (default 64)
#   VERS_BENCH_OUT=FILE also keep the raw `go test -bench` output in FILE
#
# BenchmarkBranch, BenchmarkCommit and BenchmarkCompare are fixed experiments (~2 min each) on
# 1 GiB VMs: each runs once. BenchmarkTutorialBranch builds the tutorial's db-root through
# `vers connect` (apt-get from the Debian mirror) and branches it, up to --count 100 (~15 min).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export VERS_IMAGE_DIR="${VERS_IMAGE_DIR:-/var/lib/vers/images}"
export VERS_BIN="$PWD/bin"
echo "==> building images (cached after the first run)"
bin/vers image build

raw="${VERS_BENCH_OUT:-}"
if [ -z "$raw" ]; then
	raw=$(mktemp)
	trap 'rm -f "$raw"' EXIT
fi
: >"$raw"

bench() { # name iterations
	echo "==> $1 (${2}x)"
	go test -v -count=1 -timeout 60m ./test/bench -run '^$' -bench "^$1\$" -benchtime="${2}x" | tee -a "$raw" || failed=1
}
failed=0
bench BenchmarkBoot "${VERS_BENCH_BOOT_N:-10}"
bench BenchmarkExec "${VERS_BENCH_EXEC_N:-50}"
bench BenchmarkImageBuildWarm "${VERS_BENCH_WARM_N:-10}"
if [ "${VERS_BENCH_COLD:-}" = 1 ]; then
	bench BenchmarkImageBuildCold 1
fi
bench BenchmarkVersdMemory "${VERS_BENCH_MEM_N:-5}"
bench BenchmarkTunnel "${VERS_BENCH_TUNNEL_N:-3}"
bench BenchmarkBranch 1
bench BenchmarkCommit 1
bench BenchmarkCompare 1
bench BenchmarkTutorialBranch 1

echo
echo "==> results"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(qemu-system-x86_64 --version | head -1)"
# One metric a line: "Benchmark-2  N  v1 unit1  v2 unit2 ..." becomes a table.
awk '/^Benchmark/ && NF > 2 {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	printf "%s (%s iterations)\n", name, $2
	for (i = 3; i < NF; i += 2) if ($(i+1) != "ns/op") printf "    %-28s %12s\n", $(i+1), $i
}' "$raw"
# Skipped or failed benchmarks say why on the line before their verdict.
grep -B1 -- '^--- SKIP\|^--- FAIL' "$raw" || true
exit "$failed"
