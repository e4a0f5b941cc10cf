#!/usr/bin/env bash
# bench_fs.sh: the drop folder, end to end, on this machine, in one run.
#
#   fs: ingest cp+sync into the outbox       vs  gocryptfs cp+sync, plain disk cp+sync
#   fs: cp into outbox → whole in peer inbox vs  curl PUT + GET through nginx WebDAV
#   fs: 4 KiB close → listed in peer inbox   vs  the 100 ms target (median, p95)
#   fs: peak RSS of both chutefs and chuted  vs  the 64 MiB target
#
# The work is done by tests/bench/fs_bench.py (stdlib Python); this script
# starts the nginx reference and cleans up whatever is left, always.
# Environment: CHUTE_BUILD (default build), CHUTE_BENCH_BYTES (default 1 GiB),
# CHUTE_BENCH_LATENCY_FILES (default 40), CHUTE_BENCH_E2E_ROUNDS (default 3),
# CHUTE_BENCH_NGINX (nginx binary;
# empty: none), TMPDIR (the scratch folder; put it on the disk to measure).
# Prints table rows; never fails on a number; a missing tool is a row.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath -m "${CHUTE_BUILD:-build}")
BYTES=${CHUTE_BENCH_BYTES:-1073741824}
NLAT=${CHUTE_BENCH_LATENCY_FILES:-40}
ROUNDS=${CHUTE_BENCH_INGEST_ROUNDS:-3}
E2E_ROUNDS=${CHUTE_BENCH_E2E_ROUNDS:-3}
. tests/bench/nginx.sh

row() { printf '%-44s %14s %14s %8s\n' "$1" "$2" "$3" "$4"; }

for p in chutefs chuted pairtool; do
  if [ ! -x "$B/$p" ]; then row "fs: $p not built ($B/$p)" "-" "-" "-"; exit 0; fi
done
if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
  row "fs: no FUSE here (/dev/fuse, fusermount3)" "-" "-" "-"; exit 0
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/chute-bench-fs.XXXXXX")
PY_PID=
cleanup() {
  set +e   # a failed wait or kill here must not cut the cleanup short
  local m p
  # the driver first: on SIGTERM it unmounts and stops what it started
  if [ -n "$PY_PID" ]; then kill "$PY_PID" 2>/dev/null && wait "$PY_PID" 2>/dev/null; PY_PID=; fi
  if [ -f "$T/mounts" ]; then
    while read -r m; do
      if mountpoint -q "$m" 2>/dev/null; then
        fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
      fi
    done <"$T/mounts"
  fi
  if [ -f "$T/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$T/pids"
  fi
  nginx_stop
  if [ -n "${CHUTE_BENCH_KEEP:-}" ]; then echo "bench_fs: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

nginx_start "$T/nginx" || true
: >"$T/pids"; : >"$T/mounts"
# In the background and waited for, so a signal to this script runs the trap
# at once (bash runs traps only between foreground commands).
/usr/bin/python3 tests/bench/fs_bench.py --build "$B" --tmp "$T" --bytes "$BYTES" \
  --latency-files "$NLAT" --ingest-rounds "$ROUNDS" --e2e-rounds "$E2E_ROUNDS" --nginx-url "$NURL" --nginx-root "$NGINX_ROOT" \
  --nginx-why "$NGINX_WHY" --pids "$T/pids" --mounts "$T/mounts" 2>"$T/fs_bench.log" &
PY_PID=$!
wait "$PY_PID" || true
PY_PID=
grep -v '^$' "$T/fs_bench.log" | sed 's/^/  /' >&2 || true
