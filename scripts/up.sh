#!/usr/bin/env bash
# Starts the local cluster in the background, state under $1 (kept across
# restarts), waits until it serves, and prints how to reach it.
set -euo pipefail
dir=${1:?cluster dir}
mkdir -p "$dir/logs"
bin=$(cd "$(dirname "$0")/.." && pwd)/target/debug

if [ -f "$dir/store.pid" ] && kill -0 "$(cat "$dir/store.pid")" 2>/dev/null; then
  echo "store already running (pid $(cat "$dir/store.pid"))"
else
  "$bin/store" --name local --data-dir "$dir/store" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 >"$dir/logs/store.log" 2>&1 &
  echo $! >"$dir/store.pid"
fi

for _ in $(seq 1 100); do
  if ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 --command-timeout=1s endpoint health >/dev/null 2>&1; then
    echo "store is serving etcd's API on 127.0.0.1:2379 (logs: $dir/logs/store.log)"
    echo "try: ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 put hello world"
    exit 0
  fi
  sleep 0.1
done
echo "store did not become healthy; see $dir/logs/store.log" >&2
exit 1
