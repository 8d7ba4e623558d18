#!/usr/bin/env bash
# Installs every system package the project needs. Idempotent: a package
# already present is left alone, so a second run is quick and offline-safe.
set -euo pipefail

packages=(
  protobuf-compiler   # prost/tonic code generation for `proto`
  etcd-server         # real etcd 3.4, the benchmark baseline
  etcd-client         # etcdctl 3.4, the compatibility judge for the store
  iproute2            # network namespaces for multi-node tests
  nftables iptables   # kube-proxy packet path (nftables and iptables modes)
  procps              # sysctl, for network namespaces in tests and `make up`
  containerd runc     # the kubelet's CRI runtime (containerd 1.6, cgroupfs)
  containernetworking-plugins  # bridge, host-local, portmap, loopback CNI
  conntrack           # kubelet/kube-proxy flush UDP conntrack entries
  docker-registry     # the local registry docker.io/registry.k8s.io mirror to
  skopeo              # pushes `make images`' OCI layouts to that registry
  busybox-static      # the busybox image's one binary
  curl                # `make up` waits on the apiserver's /readyz
  gdb                 # thread stacks of a hung member in test failure messages
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's etcd-server package enables a system etcd on 2379; the project
# starts its own etcd only inside benchmarks, so keep the system one off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
  systemctl disable etcd >/dev/null 2>&1 || true
fi
pkill -x etcd 2>/dev/null || true

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# The Python Kubernetes client, one of the apiserver's compatibility judges.
python3 -c "import kubernetes" 2>/dev/null || python3 -m pip install --quiet "kubernetes==33.1.0"
echo "deps: ok"
