#!/usr/bin/env bash
# bench_relay.sh: chuted against nginx (WebDAV PUT), in one run, on loopback.
#
#   relay: 4 KiB uploads/s, 64 clients   chuted create+PATCH per item  vs  nginx PUT per file
#   relay: 1 GiB upload+download         curl PATCH -T + curl GET      vs  curl PUT -T + curl GET
#   relay: chuted peak RSS               VmHWM over the whole run      vs  the 64 MiB target
#
# Environment: CHUTE_BUILD (default build), CHUTE_BENCH_BYTES (default 1 GiB),
# CHUTE_BENCH_SECONDS (load phase per server, default 5), CHUTE_BENCH_CLIENTS
# (default 64), CHUTE_BENCH_ITEMS (cap on items per server, default 200000),
# CHUTE_BENCH_NGINX (nginx binary; empty: none).
# Prints table rows; never fails on a number; a missing nginx is a row.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$(realpath -m "${CHUTE_BUILD:-build}")
BYTES=${CHUTE_BENCH_BYTES:-1073741824}
SECONDS_LOAD=${CHUTE_BENCH_SECONDS:-5}
CLIENTS=${CHUTE_BENCH_CLIENTS:-64}
ITEMS=${CHUTE_BENCH_ITEMS:-200000}
PY=/usr/bin/python3
LOAD=tests/bench/relay_load.py
. tests/bench/nginx.sh

row() { printf '%-44s %14s %14s %8s\n' "$1" "$2" "$3" "$4"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
human() { awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%.0f GiB", b/1073741824;
  else if (b >= 1048576) printf "%.0f MiB", b/1048576; else printf "%d B", b }'; }

if [ ! -x "$B/chuted" ]; then
  row "relay: chuted not built ($B/chuted)" "-" "-" "-"
  exit 0
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/chute-bench-relay.XXXXXX")
CHUTED_PID=
cleanup() {
  set +e   # a failed wait or kill here must not cut the cleanup short
  [ -n "$CHUTED_PID" ] && kill "$CHUTED_PID" 2>/dev/null && wait "$CHUTED_PID" 2>/dev/null
  nginx_stop
  rm -rf "$T"
}
trap cleanup EXIT

# wait_for CMD...: retry a command for up to 10 s.
wait_for() {
  local i
  for i in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- chuted -------------------------------------------------------------------
mkdir -p "$T/chuted-data"
"$B/chuted" --listen 127.0.0.1:0 --data "$T/chuted-data" --port-file "$T/chuted.port" \
  --inbox-quota-items 10000000 --max-conns-per-ip 256 2>"$T/chuted.log" &
CHUTED_PID=$!
if ! wait_for test -s "$T/chuted.port"; then
  row "relay: chuted did not start" "-" "-" "-"; sed 's/^/  /' "$T/chuted.log" >&2; exit 0
fi
CURL="http://127.0.0.1:$(cat "$T/chuted.port")"

# --- nginx --------------------------------------------------------------------
# CHUTE_BENCH_NGINX overrides the nginx binary (empty: run without nginx).
if ! nginx_start "$T/nginx"; then
  if [ "$NGINX_WHY" = missing ]; then row "relay: nginx missing (deps.sh bench)" "-" "-" "-"
  else row "relay: nginx did not start (see above)" "-" "-" "-"; fi
fi

# --- (a) 4 KiB uploads per second, 64 clients ----------------------------------
c_rate=$($PY $LOAD chuted "$CURL" --clients "$CLIENTS" --seconds "$SECONDS_LOAD" \
  --max-items "$ITEMS" --size 4096 2>"$T/load-chuted.log") || c_rate=0
n_rate="-"
if [ -n "$NURL" ]; then
  n_rate=$($PY $LOAD nginx "$NURL" --clients "$CLIENTS" --seconds "$SECONDS_LOAD" \
    --max-items "$ITEMS" --size 4096 2>"$T/load-nginx.log") || n_rate=0
fi
grep -h "errors" "$T"/load-*.log >&2 || true
row "relay: 4 KiB uploads/s, $CLIENTS clients" "$c_rate" "$n_rate" \
  "$( [ "$n_rate" = "-" ] && echo - || ratio "$c_rate" "$n_rate")"

# --- (b) big upload + download ---------------------------------------------------
head -c "$BYTES" /dev/urandom >"$T/big"

c_ms="-"
inbox_json=$(curl -sS -X POST "$CURL/v1/inboxes")
INBOX=$(echo "$inbox_json" | json inbox)
OWNER=$(echo "$inbox_json" | json owner_token)
SEND=$(curl -sS -X POST -H "Authorization: Bearer $OWNER" "$CURL/v1/inboxes/$INBOX/senders" | json send_token)
ITEM=bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
t0=$(now_ms)
ok=1
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $SEND" \
  -H 'Content-Type: application/json' -d "{\"size\":$BYTES,\"meta\":\"bWV0YQ==\"}" \
  "$CURL/v1/inboxes/$INBOX/items/$ITEM") || ok=0
[ "$code" = 201 ] || ok=0
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH -T "$T/big" \
  -H "Authorization: Bearer $SEND" -H 'Upload-Offset: 0' \
  -H 'Content-Type: application/offset+octet-stream' \
  "$CURL/v1/inboxes/$INBOX/items/$ITEM") || ok=0
[ "$code" = 204 ] || ok=0
tm=$(now_ms)
curl -sS -f -o "$T/down" -H "Authorization: Bearer $OWNER" \
  "$CURL/v1/inboxes/$INBOX/items/$ITEM/data" || ok=0
t1=$(now_ms)
c_up=- c_down=-
if [ $ok = 1 ] && cmp -s "$T/big" "$T/down"; then
  c_ms=$((t1 - t0)) c_up=$((tm - t0)) c_down=$((t1 - tm)); else
  echo "bench_relay: chuted big upload/download failed (last code $code)" >&2; fi
rm -f "$T/down"
curl -sS -o /dev/null -X DELETE -H "Authorization: Bearer $OWNER" \
  "$CURL/v1/inboxes/$INBOX/items/$ITEM" || true

n_ms="-" n_up=- n_down=-
if [ -n "$NURL" ]; then
  t0=$(now_ms)
  ok=1
  curl -sS -f -o /dev/null -T "$T/big" "$NURL/dav/big" || ok=0
  tm=$(now_ms)
  curl -sS -f -o "$T/down" "$NURL/dav/big" || ok=0
  t1=$(now_ms)
  if [ $ok = 1 ] && [ "$(stat -c %s "$T/down")" = "$BYTES" ]; then
    n_ms=$((t1 - t0)) n_up=$((tm - t0)) n_down=$((t1 - tm)); fi
  rm -f "$T/down" "$NGINX_ROOT/dav/big"
fi
secs() { [ "$1" = "-" ] && echo - || awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; }
both() { [ "$1" != "-" ] && [ "$2" != "-" ] && ratio "$1" "$2" || echo -; }
row "relay: $(human "$BYTES") upload+download (curl)" "$(secs "$c_ms")" "$(secs "$n_ms")" "$(both "$c_ms" "$n_ms")"
row "relay:   of which upload (create+PATCH / PUT)" "$(secs "$c_up")" "$(secs "$n_up")" "$(both "$c_up" "$n_up")"
row "relay:   of which download (GET)" "$(secs "$c_down")" "$(secs "$n_down")" "$(both "$c_down" "$n_down")"

# --- (c) peak RSS --------------------------------------------------------------
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$CHUTED_PID/status" 2>/dev/null || echo 0)
row "relay: chuted peak RSS (VmHWM) vs target" "$(awk -v k="$hwm" 'BEGIN { printf "%.1f MiB", k/1024 }')" \
  "64.0 MiB" "$(ratio "$hwm" 65536)"
