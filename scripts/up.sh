#!/usr/bin/env bash
# `make up`: a cluster from the launcher (control plane + NODES workers,
# each in its own network namespace; the cluster DNS), the example app
# from examples/ answering, and how to reach it. Already running? `up`
# brings back whatever stopped and leaves the rest alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/debug
name=${CLUSTER_NAME:-kubelite}
cluster() { "$bin/cluster" --name "$name" "$@"; }
start=$(date +%s%N)

if [ "$(id -u)" != 0 ]; then
  echo "make up needs root (network namespaces, containerd, cgroups): run it with sudo" >&2
  exit 1
fi
args=()
[ -n "${CLUSTER_CONFIG:-}" ] && args+=(--config "$CLUSTER_CONFIG")
[ -n "${NODES:-}" ] && args+=(--workers "$NODES")
[ -n "${CONTROL_PLANES:-}" ] && args+=(--control-planes "$CONTROL_PLANES")
cluster up "${args[@]}" | grep -v '^  \|^The cluster.s kubeconfig\|^Logs: \|^$'
kubeconfig=$(cluster kubeconfig --path)

# Upstream kubectl if installed, else ours.
kubectl() {
  if command -v kubectl >/dev/null; then
    command kubectl --kubeconfig "$kubeconfig" "$@"
  else
    "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"
  fi
}
elapsed() { echo "$(( ($(date +%s%N) - start) / 1000000 ))" | sed 's/\(...\)$/.\1/; s/^\./0./'; }

echo "[$(elapsed)s] deploying the example app (examples/hello.yaml)"
kubectl apply -f "$root/examples/hello.yaml" >/dev/null
kubectl rollout status deployment/hello --timeout=120s
node_ip=$(kubectl get nodes -o 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}')
url="http://$node_ip:30080/hostname"
for _ in $(seq 1 300); do
  if curl -sf -m 1 "$url" >/dev/null; then
    break
  fi
  sleep 0.1
done
if ! answer=$(curl -sf -m 2 "$url"); then
  echo "the example app does not answer at $url; see \`$bin/cluster --name $name logs kube-proxy\`" >&2
  exit 1
fi
echo "[$(elapsed)s] the example app answers at $url (served by $answer)"
echo
kubectl get pods -o wide
echo
echo "Reach the app from this machine (each request may land on another pod):"
echo "  curl $url"
echo "Use the cluster:"
echo "  export KUBECONFIG=$kubeconfig"
echo "  kubectl get nodes -o wide"
echo "Logs: $bin/cluster --name $name logs [component]; stop everything: make down"
