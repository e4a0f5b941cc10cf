#!/usr/bin/env bash
# make bench: run every benchmark and print one table of figures, each next
# to its reference measured in the same run. Benchmarks are not tests: they
# print, they never fail on a number.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${CHUTE_BUILD:-build}

printf '%-44s %14s %14s %8s\n' "benchmark" "chute" "reference" "ratio"
for s in tests/bench/bench_*.sh; do
  [ -e "$s" ] || continue
  bash "$s"
done
for b in "$B"/bench/bench_*; do
  [ -x "$b" ] || continue
  "$b"
done
