#!/usr/bin/env bash
# Stops everything `make up` started; keeps the state directory. The node
# first: the kubelet (its containers keep running), then containerd, whose
# node-setup removes the pods, mounts, network namespaces, bridge and
# cgroups on SIGTERM, then the registry and the kubelet's volume mounts;
# then the control plane.
set -uo pipefail
dir=${1:?cluster dir}
dir=$(cd "$dir" 2>/dev/null && pwd || echo "$dir")

# alive PID: the process exists and is not a zombie (whatever reaps
# orphans here may take its time).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop NAME SECONDS: SIGTERM to the process of NAME.pid, SIGKILL if it has
# not exited after SECONDS; removes the pid file.
stop() {
  local name=$1 grace=$2 pidfile="$dir/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill "$pid"
    for _ in $(seq 1 $((grace * 10))); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "$name (pid $pid) did not exit within ${grace}s; killing it" >&2
      kill -9 "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidfile"
}

stop kube-proxy 5
# Its rules (both modes), as `kube-proxy --cleanup` removes them.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$root/target/debug/kube-proxy" ]; then
  "$root/target/debug/kube-proxy" --cleanup >/dev/null 2>&1 || echo "kube-proxy --cleanup failed" >&2
fi
stop kubelet 10
# Its cleanup removes every pod through CRI, then waits for shims and
# cgroups; give it time.
stop containerd 120
stop registry 10
# The kubelet's own mounts (the tmpfs of secret and projected volumes)
# under its root dir, as `kubeadm reset` unmounts them: deepest first.
grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r mnt; do
  umount "$mnt" 2>/dev/null || umount -l "$mnt"
done
stop kube-controller-manager 5
stop kube-scheduler 5
stop apiserver 5
# Anything else a pid file names (from an older `make up`).
for pidfile in "$dir"/*.pid; do
  [ -f "$pidfile" ] || continue
  stop "$(basename "$pidfile" .pid)" 5
done
echo "stopped"
