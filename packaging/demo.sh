#!/bin/bash
# Chute demo: a relay with TLS, two paired devices ("home" and "abroad"),
# both mounted, and one file carried from abroad's outbox to home's inbox.
#
#   make demo                          (installs what is missing, builds, runs this)
#   CHUTE_BUILD=build/san packaging/demo.sh
#
# On a terminal it then leaves everything running until Ctrl-C; without one
# (CI) it stops after the delivered file. Either way it unmounts both
# devices, stops the relay and removes its temporary folder: no mount and no
# process is left behind. Exit status: 0 on success, 1 on any failure.
# CHUTE_DEMO_KEEP=1 keeps the temporary folder (logs, state) for a look.
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CHUTE_BUILD:-$here/build}
CHUTED=$build/chuted
CHUTEFS=$build/chutefs
PAIRTOOL=$build/pairtool
DELIVERY_TIMEOUT=${CHUTE_DEMO_TIMEOUT:-30}

tmp=""
relay_pid=""
invite_pid=""
declare -A fs_pid=()
failed=0
cleaning=0

say()  { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }

# Print the tail of every log in the temp folder (on failure).
show_logs() {
  [ -n "$tmp" ] && [ -d "$tmp/logs" ] || return 0
  local f
  for f in "$tmp"/logs/*; do
    [ -s "$f" ] || continue
    printf '\n---- %s (last 30 lines) ----\n' "${f#"$tmp"/}" >&2
    tail -n 30 "$f" >&2
  done
}

fail() {
  printf '\nchute demo: FAILED: %s\n' "$*" >&2
  failed=1
  show_logs
  exit 1
}

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds;
# returns 1 when the time is up.
wait_for() {
  local limit=$(( $1 * 10 )) i=0
  shift
  while ! "$@"; do
    i=$((i + 1))
    [ "$i" -ge "$limit" ] && return 1
    sleep 0.1
  done
  return 0
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
gone()  { ! alive "$1"; }

# stop_pid PID SECONDS: SIGTERM, a bounded wait, then SIGKILL.
stop_pid() {
  local pid=$1
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  if ! wait_for "$2" gone "$pid"; then
    say "    (pid $pid ignored SIGTERM for $2 s: killing it)" >&2
    kill -KILL "$pid" 2>/dev/null
    wait_for 5 gone "$pid"
  fi
  wait "$pid" 2>/dev/null
  return 0
}

unmount() {
  local mnt=$1 pid=${fs_pid[$1]:-}
  # A shell sitting in the mount makes it busy: retry a few seconds, then
  # detach it lazily (the last resort).
  if mountpoint -q "$mnt" && ! wait_for 5 fusermount3 -u "$mnt" 2>/dev/null; then
    say "    $mnt is busy (a shell or program in it?): lazy unmount" >&2
    fusermount3 -u -z "$mnt" 2>/dev/null
  fi
  # chutefs exits once unmounted; an upload in flight may hold it a little.
  if alive "$pid" && ! wait_for 20 gone "$pid"; then
    say "    chutefs (pid $pid) still running after unmount: stopping it" >&2
    stop_pid "$pid" 5
  fi
  wait "$pid" 2>/dev/null
  if mountpoint -q "$mnt"; then
    fusermount3 -u -z "$mnt" 2>/dev/null
  fi
}

cleanup() {
  local rc=$?
  [ "$cleaning" = 1 ] && return
  cleaning=1
  trap '' INT TERM HUP
  [ "$failed" = 1 ] || [ "$rc" = 0 ] || { failed=1; show_logs; }
  step "Cleaning up"
  alive "$invite_pid" && stop_pid "$invite_pid" 5
  local m
  for m in "${!fs_pid[@]}"; do
    unmount "$m"
    info "unmounted $m"
  done
  # The relay may have been restarted by hand with relay-start: its pid is
  # in chuted.pid either way.
  if [ -n "$tmp" ] && [ -s "$tmp/chuted.pid" ]; then
    relay_pid=$(cat "$tmp/chuted.pid")
  fi
  if [ -n "$relay_pid" ]; then
    stop_pid "$relay_pid" 15
    info "relay stopped"
  fi
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    local still=""
    for m in "$tmp"/mnt-*; do
      mountpoint -q "$m" 2>/dev/null && still="$still $m"
    done
    if [ -n "$still" ]; then
      say "chute demo: still mounted:$still; not removing $tmp" >&2
      rc=1
    elif [ "${CHUTE_DEMO_KEEP:-0}" = 1 ]; then
      info "kept $tmp (CHUTE_DEMO_KEEP=1)"
    else
      rm -rf "$tmp"
      info "removed $tmp"
    fi
  fi
  [ "$failed" = 1 ] && [ "$rc" = 0 ] && rc=1
  exit "$rc"
}

trap cleanup EXIT
trap 'say ""; say "Stopping the demo."; exit 0' INT TERM HUP

# --- 0. what is needed ----------------------------------------------------------
for p in "$CHUTED" "$CHUTEFS" "$PAIRTOOL"; do
  [ -x "$p" ] || fail "$p is missing: run 'make demo' (or 'make') first"
done
for t in fusermount3 mountpoint cmp sha256sum; do
  command -v "$t" >/dev/null || fail "$t is missing: run 'packaging/deps.sh demo'"
done
[ -c /dev/fuse ] || fail "/dev/fuse is missing: FUSE is not available here (in a container, pass --device /dev/fuse)"
if ! command -v certtool >/dev/null && ! command -v openssl >/dev/null; then
  fail "neither certtool (gnutls-bin) nor openssl is installed"
fi

say "Chute demo: a relay, two paired devices, one file carried end to end."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chute-demo.XXXXXX") || fail "cannot make a temporary folder"
mkdir -p "$tmp/logs" "$tmp/tls" "$tmp/mnt-home" "$tmp/mnt-abroad"
info "everything lives in $tmp (logs in $tmp/logs)"

# --- 1. a self-signed certificate for 127.0.0.1 -----------------------------------
step "Making a self-signed TLS certificate for 127.0.0.1"
key=$tmp/tls/key.pem
crt=$tmp/tls/cert.pem
if command -v certtool >/dev/null; then
  printf 'cn = "127.0.0.1"\nip_address = "127.0.0.1"\ndns_name = "localhost"\nexpiration_days = 2\nsigning_key\ntls_www_server\n' \
    > "$tmp/tls/template"
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$key" \
    >>"$tmp/logs/certtool.log" 2>&1 &&
  certtool --generate-self-signed --load-privkey "$key" --template "$tmp/tls/template" \
    --outfile "$crt" >>"$tmp/logs/certtool.log" 2>&1 || fail "certtool could not make the certificate"
  pin="sha256//$(certtool -i --infile "$crt" 2>/dev/null |
                 sed -n 's/.*pin-sha256:\([^ ]*\).*/\1/p' | head -n 1)"
  info "certtool: $crt"
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$key" -out "$crt" -days 2 -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >>"$tmp/logs/openssl.log" 2>&1 ||
    fail "openssl could not make the certificate"
  pin="sha256//$(openssl x509 -in "$crt" -pubkey -noout | openssl pkey -pubin -outform DER |
                 openssl dgst -sha256 -binary | base64)"
  info "openssl: $crt"
fi
[ "${#pin}" -gt 20 ] || fail "could not compute the public key pin of $crt"
info "its public key pin: $pin"

# --- 2. the relay -----------------------------------------------------------------
step "Starting the relay (chuted) with TLS on a free loopback port"
# relay-start runs chuted in the background and records its pid; the demo
# uses it, and so can you after stopping the relay.
start_relay() {
  local listen=$1
  rm -f "$tmp/chuted.port"
  "$CHUTED" --listen "$listen" --data "$tmp/relay" --port-file "$tmp/chuted.port" \
    --tls-cert "$crt" --tls-key "$key" >>"$tmp/logs/chuted.log" 2>&1 &
  relay_pid=$!
  echo "$relay_pid" > "$tmp/chuted.pid"
  wait_for 10 test -s "$tmp/chuted.port" || {
    alive "$relay_pid" || fail "chuted exited while starting (see chuted.log below)"
    fail "chuted did not write its port within 10 s"
  }
}
start_relay 127.0.0.1:0
port=$(cat "$tmp/chuted.port")
url=https://127.0.0.1:$port
cat > "$tmp/relay-start" <<EOF
#!/bin/sh
# Starts the demo's relay again, on the same port and data folder.
"$CHUTED" --listen 127.0.0.1:$port --data "$tmp/relay" --port-file "$tmp/chuted.port" \\
  --tls-cert "$crt" --tls-key "$key" >>"$tmp/logs/chuted.log" 2>&1 &
echo \$! > "$tmp/chuted.pid"
echo "relay started again (pid \$!)"
EOF
chmod +x "$tmp/relay-start"
info "chuted (pid $relay_pid) is listening on $url"
info "data folder $tmp/relay, log $tmp/logs/chuted.log"

# --- 3. two devices ---------------------------------------------------------------
step "Creating two devices, home and abroad, both pinning the relay's key"
home=$tmp/home
abroad=$tmp/abroad
for dev in home abroad; do
  "$PAIRTOOL" -H "$tmp/$dev" init --relay "$url" --name "$dev" --pin "$pin" \
    >>"$tmp/logs/pairtool-$dev.log" 2>&1 || fail "pairtool init of $dev failed"
  info "pairtool -H $tmp/$dev init --relay $url --name $dev --pin $pin"
done

# --- 4. pairing by code -----------------------------------------------------------
step "Pairing them with a one-time code (CPace through the relay)"
"$PAIRTOOL" -H "$home" invite --yes >"$tmp/invite.out" 2>>"$tmp/logs/pairtool-home.log" &
invite_pid=$!
have_code() { [ "$(wc -l < "$tmp/invite.out")" -ge 1 ] || gone "$invite_pid"; }
wait_for 15 have_code || fail "pairtool invite printed no code within 15 s"
code=$(head -n 1 "$tmp/invite.out")
[ -n "$code" ] || fail "pairtool invite exited without a code"
info "home:   pairtool invite --yes     ->  code $code"
"$PAIRTOOL" -H "$abroad" join "$code" --yes >"$tmp/join.out" 2>>"$tmp/logs/pairtool-abroad.log" ||
  fail "pairtool join $code failed"
wait_for 30 gone "$invite_pid" || fail "pairtool invite did not finish within 30 s"
wait "$invite_pid" || fail "pairtool invite failed"
invite_pid=""
to_home=$(head -n 1 "$tmp/join.out")          # abroad's folder name for home
to_abroad=$(sed -n 2p "$tmp/invite.out")      # home's folder name for abroad
info "abroad: pairtool join $code --yes"
# the check number stands alone on the line after "...both screens show:"
check=$(awk '/both screens show:$/ { next_one = 1; next }
             next_one && NF { print $1 " " $2; exit }' "$tmp/logs/pairtool-abroad.log")
[ -n "$check" ] && info "both screens showed the same check, $check (the inviter approved by name)"
info "paired: home knows '$to_abroad', abroad knows '$to_home'"
[ -n "$to_home" ] && [ -n "$to_abroad" ] || fail "pairing did not name the peers"

# --- 5. mounts --------------------------------------------------------------------
step "Mounting both drop folders (chutefs)"
mount_dev() {
  local dev=$1 mnt=$tmp/mnt-$1
  # -f keeps chutefs in the foreground of this script, so its log is kept
  # and its pid known; without -f it detaches itself.
  "$CHUTEFS" -H "$tmp/$dev" "$mnt" -f >>"$tmp/logs/chutefs-$dev.log" 2>&1 &
  fs_pid[$mnt]=$!
  mounted() { mountpoint -q "$mnt" || gone "${fs_pid[$mnt]}"; }
  wait_for 10 mounted && mountpoint -q "$mnt" || fail "chutefs did not mount $mnt"
  info "chutefs -H $tmp/$dev $mnt    (pid ${fs_pid[$mnt]})"
}
mount_dev home
mount_dev abroad
mhome=$tmp/mnt-home
mabroad=$tmp/mnt-abroad
info "abroad sees: $(cd "$mabroad" && echo outbox/*/ inbox/*/ status)"

# --- 6. a file ---------------------------------------------------------------------
step "Dropping a file into abroad's outbox/$to_home/"
sample=$tmp/hello-from-abroad.txt
{
  echo "Hello from abroad! Sent $(date -u '+%Y-%m-%d %H:%M:%S UTC') through Chute."
  echo "It was encrypted with age on abroad; the relay only ever stored ciphertext."
  head -c 200000 /dev/urandom | base64
} > "$sample"
size=$(stat -c %s "$sample")
t0=$(date +%s%N)
cp "$sample" "$mabroad/outbox/$to_home/" || fail "cp into the outbox failed"
info "cp hello-from-abroad.txt $mabroad/outbox/$to_home/   ($size bytes, durably queued)"
xattr() { python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())' "$@" 2>/dev/null; }
st=$(xattr "$mabroad/outbox/$to_home/hello-from-abroad.txt" user.chute.state) &&
  info "its state (xattr user.chute.state) right after close: $st"

step "Waiting up to ${DELIVERY_TIMEOUT}s for it in home's inbox/$to_abroad/"
arrived=$mhome/inbox/$to_abroad/hello-from-abroad.txt
if ! wait_for "$DELIVERY_TIMEOUT" test -f "$arrived"; then
  { echo "abroad's status:"; sed 's/^/    /' "$mabroad/status"
    echo "home's status:"; sed 's/^/    /' "$mhome/status"; } >&2
  fail "the file did not arrive in $mhome/inbox/$to_abroad/ within ${DELIVERY_TIMEOUT}s"
fi
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cmp -s "$sample" "$arrived" || fail "the received file differs from the one sent"
say "    delivered: hello-from-abroad.txt is in home's inbox/$to_abroad/ ${ms} ms after the cp, byte-identical"
info "sha256 $(sha256sum < "$arrived" | cut -c1-64)"
# The sender learns of the delivery from the relay shortly after.
outbox_empty() { [ -z "$(ls -A "$mabroad/outbox/$to_home")" ]; }
wait_for 10 outbox_empty && info "abroad's outbox entry is gone: the relay confirmed the delivery"

# --- 7. status ---------------------------------------------------------------------
step "cat $mabroad/status"
sed 's/^/    /' "$mabroad/status"
step "cat $mhome/status"
sed 's/^/    /' "$mhome/status"
step "pairtool -H $abroad status"
"$PAIRTOOL" -H "$abroad" status 2>&1 | sed 's/^/    /'
step "pairtool -H $home status"
"$PAIRTOOL" -H "$home" status 2>&1 | sed 's/^/    /'

# --- 8. play, or stop -------------------------------------------------------------
if [ ! -t 0 ]; then
  step "Demo done: the file was delivered (no terminal on stdin, so stopping now)"
  exit 0
fi

step "All running. Things to try (in another terminal):"
cat <<EOF
    # send files: drag them into abroad's outbox, or
    cp SOMEFILE $mabroad/outbox/$to_home/
    ls -l $mhome/inbox/$to_abroad/          # ...and they arrive here
    # the other way round works too:
    cp SOMEFILE $mhome/outbox/$to_abroad/
    # stop the relay, send a file, and watch it wait in the queue:
    kill \$(cat $tmp/chuted.pid)
    cp SOMEFILE $mabroad/outbox/$to_home/ && cat $mabroad/status
    getfattr -n user.chute.state $mabroad/outbox/$to_home/SOMEFILE   # (package attr)
    # start the relay again: the queue drains by itself
    $tmp/relay-start
    cat $mabroad/status $mhome/status
    pairtool -H $abroad status              # (pairtool is $PAIRTOOL)

    Press Ctrl-C here to unmount both, stop the relay and remove $tmp.
EOF
while :; do sleep 1; done
