# nginx.sh — sourced by the bench scripts: a throwaway nginx serving WebDAV
# PUT/GET on 127.0.0.1, the unencrypted reference for big transfers.
#
#   nginx_start DIR   find nginx (CHUTE_BENCH_NGINX overrides; empty: none),
#                     start it under DIR; on success sets NURL (base URL,
#                     files go under $NURL/dav/) and NGINX_PID, returns 0;
#                     otherwise sets NGINX_WHY ("missing", "did not start")
#                     and returns 1.
#   nginx_stop        stop it (idempotent; safe in an EXIT trap).
#   NGINX_ROOT        the folder nginx serves (DIR/www).

NGINX_PID= NURL= NGINX_WHY= NGINX_ROOT=

nginx_start() {
  local dir=$1 bin port user_line i
  if [ -n "${CHUTE_BENCH_NGINX+set}" ]; then bin=$CHUTE_BENCH_NGINX
  else bin=$(command -v nginx || true)
    [ -z "$bin" ] && [ -x /usr/sbin/nginx ] && bin=/usr/sbin/nginx
  fi
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then NGINX_WHY="missing"; return 1; fi
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/www/dav" "$dir/tmp"
  NGINX_ROOT=$dir/www
  user_line=""
  [ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
  cat >"$dir/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:$port;
    root $dir/www;
    client_max_body_size 0;
    location /dav/ {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw;
    }
  }
}
EOF
  "$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  NGINX_PID=$!
  for i in $(seq 1 200); do   # bounded: 10 s
    if curl -sf -o /dev/null -X PUT --data-binary x "http://127.0.0.1:$port/dav/ready" 2>/dev/null; then
      NURL="http://127.0.0.1:$port"; return 0
    fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
  done
  NGINX_WHY="did not start"
  sed 's/^/  nginx: /' "$dir/error.log" >&2 2>/dev/null || true
  nginx_stop
  return 1
}

nginx_stop() {
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null && { wait "$NGINX_PID" 2>/dev/null || true; }
    NGINX_PID=
  fi
  return 0
}
