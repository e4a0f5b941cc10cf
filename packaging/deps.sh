#!/bin/sh
# Installs the Debian packages Chute needs to build and test, if any are
# missing. Quiet and fast when everything is there, so `make` can call it
# every time. Usage: deps.sh [build|check|fuzz|bench|demo|deb|ci|all]  (default: check)
# ci = check + fuzz + nginx: without nginx, `make check` skips its proxy test.
set -u

group=${1:-check}

build="gcc make pkg-config libsodium-dev libsqlite3-dev libjansson-dev
libcurl4-openssl-dev libmicrohttpd-dev libfuse3-dev fuse3 libqrencode-dev
libsystemd-dev zlib1g-dev"
check="$build python3 python3-pytest age curl rsync sqlite3 gnutls-bin
tar coreutils procps systemd man-db groff-base strace faketime e2fsprogs mount"
fuzz="$build clang libclang-rt-14-dev"
bench="$check nginx-light gocryptfs hyperfine"
demo="$check"
deb="$build debhelper dpkg-dev fakeroot lintian"
ci="$check $fuzz nginx-light"

case "$group" in
  build) want=$build ;;
  check) want=$check ;;
  fuzz)  want=$fuzz ;;
  bench) want=$bench ;;
  demo)  want=$demo ;;
  deb)   want=$deb ;;
  ci)    want=$ci ;;
  all)   want="$check $fuzz $bench $deb" ;;
  *) echo "usage: $0 [build|check|fuzz|bench|demo|deb|ci|all]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
  [ "$status" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
cmd="apt-get install -y --no-install-recommends $missing"
if [ "$(id -u)" -ne 0 ]; then
  echo "chute: missing Debian packages. Install them with:" >&2
  echo "  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi

echo "chute: installing missing packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# An old or absent package list makes apt-get install fail; refresh it once.
if ! apt-get install -y -qq --no-install-recommends $missing >&2; then
  apt-get update -qq >&2 || { echo "chute: apt-get update failed" >&2; exit 1; }
  apt-get install -y -qq --no-install-recommends $missing >&2 ||
    { echo "chute: could not install:$missing" >&2; exit 1; }
fi
exit 0
