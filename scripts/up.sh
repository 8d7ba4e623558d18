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

# start_component NAME PORT ARGS...: starts bin/NAME unless its pid file
# names a live process, then waits for its /healthz on PORT.
start_component() {
  local name=$1 cport=$2
  shift 2
  local pidfile="$dir/$name.pid" log="$dir/logs/$name.log"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$pidfile"))"
    return 0
  fi
  "$bin/$name" "$@" --secure-port "$cport" --bind-address 127.0.0.1 >"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 300); do
    if curl -sfk "https://127.0.0.1:$cport/healthz" >/dev/null 2>&1; then
      echo "$name is running (logs: $log)"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name exited; see $log" >&2
      tail -5 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not start serving; see $log" >&2
  exit 1
}

# The control-plane components, each with its own identity (the
# kubeconfigs the apiserver wrote for system:kube-scheduler and
# system:kube-controller-manager), leader-elected as upstream's.
start_component kube-scheduler "${SCHEDULER_SECURE_PORT:-10259}" \
  --kubeconfig "$dir/apiserver/scheduler.kubeconfig"
start_component kube-controller-manager "${CONTROLLER_MANAGER_SECURE_PORT:-10257}" \
  --kubeconfig "$dir/apiserver/controller-manager.kubeconfig" \
  --service-account-private-key-file "$dir/apiserver/pki/sa.key"
echo "export KUBECONFIG=$kubeconfig"
