#!/usr/bin/env bash
# make bench: run every benchmark and print one table of figures, each next
# to its reference measured in the same run. Benchmarks are not tests: they
# print, they never fail on a number.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${CHUTE_BUILD:-build}

echo "# references: measured in this same run on this machine (raw libsodium, nginx WebDAV,"
echo "# gocryptfs, plain disk) or the DESIGN.md §8 targets (100 ms, 64 MiB); ratio = chute/reference"
echo "# (times, RSS: lower is better; rates: higher is better). Goals and past runs: docs/BENCHMARKS.md"
echo "# machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -r), $(date -u +%FT%TZ)"
printf '%-44s %14s %14s %8s\n' "benchmark" "chute" "reference" "ratio"
for s in tests/bench/bench_*.sh; do
  [ -e "$s" ] || continue
  bash "$s"
done
for b in "$B"/bench/bench_*; do
  [ -x "$b" ] || continue
  "$b"
done
