#!/usr/bin/env bash
# Starts the local cluster in the background, state under $1 (kept across
# restarts), waits until it serves, and prints how to reach it.
set -euo pipefail
dir=${1:?cluster dir}
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
mkdir -p "$dir/logs"
bin=$(cd "$(dirname "$0")/.." && pwd)/target/debug
port=${SECURE_PORT:-6443}

if [ -f "$dir/apiserver.pid" ] && kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then
  echo "kube-apiserver already running (pid $(cat "$dir/apiserver.pid"))"
else
  # The apiserver embeds the store; it also serves etcd's client API on
  # 127.0.0.1:2379 so etcdctl can look inside.
  "$bin/kube-apiserver" --name local --data-dir "$dir/apiserver" \
    --secure-port "$port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --listen-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 >"$dir/logs/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
fi

kubeconfig="$dir/apiserver/admin.kubeconfig"
ready=""
for _ in $(seq 1 300); do
  if [ -f "$kubeconfig" ] && curl -sfk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  if ! kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null; then
    echo "kube-apiserver exited; see $dir/logs/kube-apiserver.log" >&2
    tail -5 "$dir/logs/kube-apiserver.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "kube-apiserver did not become ready; see $dir/logs/kube-apiserver.log" >&2
  exit 1
fi
echo "kube-apiserver is serving on https://127.0.0.1:$port (logs: $dir/logs/kube-apiserver.log)"

# kube-scheduler, with its own identity (the kubeconfig the apiserver
# wrote for system:kube-scheduler), leader-elected as upstream's.
sched_port=${SCHEDULER_SECURE_PORT:-10259}
if [ -f "$dir/scheduler.pid" ] && kill -0 "$(cat "$dir/scheduler.pid")" 2>/dev/null; then
  echo "kube-scheduler already running (pid $(cat "$dir/scheduler.pid"))"
else
  "$bin/kube-scheduler" --kubeconfig "$dir/apiserver/scheduler.kubeconfig" \
    --secure-port "$sched_port" --bind-address 127.0.0.1 >"$dir/logs/kube-scheduler.log" 2>&1 &
  echo $! >"$dir/scheduler.pid"
fi
for _ in $(seq 1 300); do
  if curl -sfk "https://127.0.0.1:$sched_port/healthz" >/dev/null 2>&1; then
    echo "kube-scheduler is running (logs: $dir/logs/kube-scheduler.log)"
    echo "export KUBECONFIG=$kubeconfig"
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/scheduler.pid")" 2>/dev/null; then
    echo "kube-scheduler exited; see $dir/logs/kube-scheduler.log" >&2
    tail -5 "$dir/logs/kube-scheduler.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "kube-scheduler did not start serving; see $dir/logs/kube-scheduler.log" >&2
exit 1
