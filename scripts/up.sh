#!/usr/bin/env bash
# Starts the local cluster in the background, state under $1 (kept across
# restarts), waits until it serves, and prints how to reach it: the control
# plane (kube-apiserver, kube-scheduler, kube-controller-manager) and one
# node (a registry with the project's images, a containerd of its own, a
# kubelet). Whatever already runs (by its pid file) is left alone.
set -euo pipefail
dir=${1:?cluster dir}
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
mkdir -p "$dir/logs"
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/debug
port=${SECURE_PORT:-6443}

# running PIDFILE: the pid file names a live process (not a zombie: what
# reaps orphans here may take its time).
running() {
  local state
  [ -f "$1" ] || return 1
  state=$(sed 's/.*) //' "/proc/$(cat "$1")/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# wait_for WHAT PIDFILE LOG CMD...: waits (30 s at most) until CMD
# succeeds; fails with the log's tail if the process exits or time runs out.
wait_for() {
  local what=$1 pidfile=$2 log=$3
  shift 3
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if ! running "$pidfile"; then
      echo "$what exited; see $log" >&2
      tail -5 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$what did not start within 30 s; see $log" >&2
  tail -5 "$log" >&2
  exit 1
}

# The node's address: the host's source address towards its default
# route (else its first global IPv4). Pods reach the apiserver there (the
# default/kubernetes Service's endpoint), NodePorts answer there.
node_ip=${NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)}
if [ -z "$node_ip" ]; then
  node_ip=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)
fi
node_ip=${node_ip:-127.0.0.1}

if running "$dir/apiserver.pid"; then
  echo "kube-apiserver already running (pid $(cat "$dir/apiserver.pid"))"
else
  # The apiserver embeds the store; it also serves etcd's client API on
  # 127.0.0.1:2379 so etcdctl can look inside. It reaches the kubelet
  # (logs, exec, port-forward) at the node's InternalIP, and lists itself
  # at $node_ip as the endpoint of the default/kubernetes Service.
  "$bin/kube-apiserver" --name local --data-dir "$dir/apiserver" \
    --secure-port "$port" --bind-address 0.0.0.0 --advertise-address "$node_ip" \
    --service-cluster-ip-range 10.96.0.0/12 \
    --listen-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 \
    --kubelet-preferred-address-types InternalIP,Hostname >"$dir/logs/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
fi

kubeconfig="$dir/apiserver/admin.kubeconfig"
apiserver_ready() {
  [ -f "$kubeconfig" ] && curl -sfk "https://127.0.0.1:$port/readyz"
}
wait_for kube-apiserver "$dir/apiserver.pid" "$dir/logs/kube-apiserver.log" apiserver_ready
echo "kube-apiserver is serving on https://127.0.0.1:$port (logs: $dir/logs/kube-apiserver.log)"

# start_component NAME PORT ARGS...: starts bin/NAME unless its pid file
# names a live process, then waits for its /healthz on PORT.
start_component() {
  local name=$1 cport=$2
  shift 2
  local pidfile="$dir/$name.pid" log="$dir/logs/$name.log"
  if running "$pidfile"; then
    echo "$name already running (pid $(cat "$pidfile"))"
    return 0
  fi
  "$bin/$name" "$@" --secure-port "$cport" --bind-address 127.0.0.1 >"$log" 2>&1 &
  echo $! >"$pidfile"
  wait_for "$name" "$pidfile" "$log" curl -sfk "https://127.0.0.1:$cport/healthz"
  echo "$name is running (logs: $log)"
}

# The control-plane components, each with its own identity (the
# kubeconfigs the apiserver wrote for system:kube-scheduler and
# system:kube-controller-manager), leader-elected as upstream's.
start_component kube-scheduler "${SCHEDULER_SECURE_PORT:-10259}" \
  --kubeconfig "$dir/apiserver/scheduler.kubeconfig"
start_component kube-controller-manager "${CONTROLLER_MANAGER_SECURE_PORT:-10257}" \
  --kubeconfig "$dir/apiserver/controller-manager.kubeconfig" \
  --service-account-private-key-file "$dir/apiserver/pki/sa.key"

# --- The node ---------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
  echo "not root: no node (containerd and the kubelet need root)" >&2
  echo "export KUBECONFIG=$kubeconfig"
  exit 0
fi
node=${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
storage=${NODE_SETUP_REGISTRY_DIR:-$root/target/images/registry}
if [ ! -d "$storage/docker" ]; then
  echo "no images in $storage: run \`make images\`" >&2
  exit 1
fi

# 1. The registry serving the project's images (pause, busybox, agnhost)
#    read-only, on REGISTRY_PORT (5000) unless taken, else any free port;
#    node-setup prints its address into registry.addr.
if running "$dir/registry.pid"; then
  echo "registry already running (pid $(cat "$dir/registry.pid"))"
else
  rport=${REGISTRY_PORT:-5000}
  if ss -Hltn "sport = :$rport" | grep -q .; then
    rport=""
  fi
  : >"$dir/registry.addr"
  "$bin/node-setup" registry --storage "$storage" --dir "$dir/registry" ${rport:+--port "$rport"} \
    >"$dir/registry.addr" 2>"$dir/logs/registry.log" &
  echo $! >"$dir/registry.pid"
fi
registry_ready() {
  [ -s "$dir/registry.addr" ] && curl -sf "http://$(head -1 "$dir/registry.addr")/v2/"
}
wait_for registry "$dir/registry.pid" "$dir/logs/registry.log" registry_ready
registry=$(head -1 "$dir/registry.addr")
echo "registry is serving $storage on http://$registry (logs: $dir/logs/registry.log)"

# 2. The node's containerd, configured to share nothing with others on
#    the machine; its dir (removed on SIGTERM, with the pods, mounts,
#    bridge and cgroups it made) stays short for unix socket paths. Pods'
#    cgroups go under /kubelite-<id>.
id=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
cdir=$dir/c
if [ ${#cdir} -gt 80 ]; then
  cdir=/run/kubelite/$id
fi
cgroup_root=/kubelite-$id
cni_conf_dir=$cdir/cni/net.d
if running "$dir/containerd.pid"; then
  echo "containerd already running (pid $(cat "$dir/containerd.pid"))"
  if [ "$(cat "$dir/containerd.registry" 2>/dev/null)" != "$registry" ]; then
    echo "warning: containerd pulls from $(cat "$dir/containerd.registry" 2>/dev/null), not $registry: \`make down\` and \`make up\` again" >&2
  fi
else
  echo "$registry" >"$dir/containerd.registry"
  : >"$dir/containerd.sock-path"
  "$bin/node-setup" containerd --dir "$cdir" --registry "$registry" \
    --cni-conf-dir "$cni_conf_dir" --cgroup-parent-prefix "$cgroup_root" \
    >"$dir/containerd.sock-path" 2>"$dir/logs/containerd.log" &
  echo $! >"$dir/containerd.pid"
fi
containerd_ready() {
  [ -s "$dir/containerd.sock-path" ] && [ -S "$(head -1 "$dir/containerd.sock-path")" ] &&
    ctr --address "$(head -1 "$dir/containerd.sock-path")" version
}
wait_for containerd "$dir/containerd.pid" "$dir/logs/containerd.log" containerd_ready
socket=$(head -1 "$dir/containerd.sock-path")
echo "containerd is running on $socket (logs: $dir/logs/containerd.log, $cdir/containerd.log)"

# 3. The node's identity (system:node:<node> in system:nodes) and the
#    kubelet's serving certificate, from the cluster CA.
pki=$dir/apiserver/pki
if [ ! -s "$dir/kubelet.kubeconfig" ]; then
  "$bin/kubeadm" kubeconfig user --client-name "system:node:$node" --org system:nodes \
    --cert-dir "$pki" --server "https://127.0.0.1:$port" >"$dir/kubelet.kubeconfig.tmp"
  mv "$dir/kubelet.kubeconfig.tmp" "$dir/kubelet.kubeconfig"
fi
if [ ! -s "$dir/kubelet-pki/kubelet.crt" ]; then
  "$bin/kubeadm" certs kubelet-serving --cert-dir "$pki" --node-name "$node" --ip "$node_ip" \
    --out-dir "$dir/kubelet-pki"
fi

# 4. The kubelet. Nothing allocates pod CIDRs (the controller-manager runs
#    without --allocate-node-cidrs), so the node takes POD_CIDR; the
#    kubelet writes the bridge network into containerd's CNI conf dir.
kport=${KUBELET_PORT:-10250}
hport=${KUBELET_HEALTHZ_PORT:-10248}
if running "$dir/kubelet.pid"; then
  echo "kubelet already running (pid $(cat "$dir/kubelet.pid"))"
else
  RUST_LOG=${RUST_LOG:-info} "$bin/kubelet" --kubeconfig "$dir/kubelet.kubeconfig" \
    --hostname-override "$node" --node-ip "$node_ip" \
    --cluster-dns 10.96.0.10 --cluster-domain cluster.local \
    --container-runtime-endpoint "unix://$socket" \
    --root-dir "$dir/kubelet" --pod-log-dir "$dir/pod-logs" \
    --cni-conf-dir "$cni_conf_dir" --cni-bridge "kl$id" --pod-cidr "${POD_CIDR:-10.244.0.0/24}" \
    --cgroup-root "$cgroup_root" \
    --client-ca-file "$pki/ca.crt" \
    --tls-cert-file "$dir/kubelet-pki/kubelet.crt" --tls-private-key-file "$dir/kubelet-pki/kubelet.key" \
    --port "$kport" --healthz-port "$hport" \
    --eviction-hard 'memory.available<100Mi' >"$dir/logs/kubelet.log" 2>&1 &
  echo $! >"$dir/kubelet.pid"
fi
node_ready() {
  [ "$(kubectl_ get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
kubectl_() {
  if command -v kubectl >/dev/null; then
    kubectl --kubeconfig "$kubeconfig" "$@"
  else
    "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"
  fi
}
wait_for "kubelet (node $node Ready)" "$dir/kubelet.pid" "$dir/logs/kubelet.log" node_ready
echo "kubelet is running, node $node is Ready (logs: $dir/logs/kubelet.log)"

# 5. kube-proxy (nftables mode, the node's own identity for the proxy:
#    system:kube-proxy). Pod -> Service -> pod on one bridge needs bridged
#    traffic to pass the IP hooks (br_netfilter, as kubeadm requires).
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
fi
pport=${KUBE_PROXY_HEALTHZ_PORT:-10256}
if running "$dir/kube-proxy.pid"; then
  echo "kube-proxy already running (pid $(cat "$dir/kube-proxy.pid"))"
else
  RUST_LOG=${RUST_LOG:-info} "$bin/kube-proxy" --kubeconfig "$dir/apiserver/kube-proxy.kubeconfig" \
    --hostname-override "$node" --proxy-mode "${PROXY_MODE:-nftables}" \
    --cluster-cidr "${CLUSTER_CIDR:-10.244.0.0/16}" \
    --healthz-bind-address "127.0.0.1:$pport" --metrics-bind-address "127.0.0.1:${KUBE_PROXY_METRICS_PORT:-10249}" \
    >"$dir/logs/kube-proxy.log" 2>&1 &
  echo $! >"$dir/kube-proxy.pid"
fi
wait_for kube-proxy "$dir/kube-proxy.pid" "$dir/logs/kube-proxy.log" curl -sf "http://127.0.0.1:$pport/healthz"
echo "kube-proxy is running in ${PROXY_MODE:-nftables} mode (logs: $dir/logs/kube-proxy.log)"

# 6. Cluster DNS, deployed as upstream's CoreDNS is (Deployment coredns,
#    Service kube-dns at 10.96.0.10 in kube-system).
kubectl_ apply -f "$root/addons/cluster-dns.yaml" >/dev/null
dns_ready() {
  [ "$(kubectl_ -n kube-system get deployment coredns -o 'jsonpath={.status.availableReplicas}')" -ge 1 ] 2>/dev/null
}
wait_for "cluster DNS (deployment kube-system/coredns available)" "$dir/kubelet.pid" "$dir/logs/kubelet.log" dns_ready
echo "cluster DNS is answering at 10.96.0.10 (kubectl -n kube-system get pods -l k8s-app=kube-dns)"

echo "export KUBECONFIG=$kubeconfig"
echo "then: kubectl run hello --image=registry.k8s.io/e2e-test-images/agnhost:2.53 -- netexec --http-port=8080; kubectl get pod hello -o wide; curl http://<pod IP>:8080/hostname"
