# The project's entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
CLUSTER_NAME ?= kubelite

.PHONY: deps build test lint unit images bench bench-store bench-history bench-apiserver bench-scheduler bench-controllers bench-kubelet bench-proxy bench-dns bench-cluster up down clean

deps:
	@bash scripts/deps.sh

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Everything CI checks: system packages, lints, unit and integration tests.
# Tests run in parallel under nextest; each test owns its ports and dirs.
test: deps lint images
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --no-fail-fast --profile ci

# The test images (pause, busybox, agnhost), built here without network
# into the registry storage target/images/registry that tests and `make up`
# serve; reproducible, so a rerun pushes nothing.
images: deps
	@CARGO="$(CARGO)" bash scripts/images.sh

unit:
	$(CARGO) nextest run --workspace --lib --bins

bench: bench-store bench-history bench-apiserver bench-scheduler bench-controllers

# Our store vs etcd 3.4 (Debian's etcd-server), same load generator.
bench-store: deps
	$(CARGO) build --release -p store -p integration-tests
	target/release/loadgen compare

# kube-apiserver latency and throughput (1 and 3 apiservers; 1/16/64
# clients); table in target/bench-apiserver.md.
bench-apiserver: deps
	$(CARGO) build --release -p apiserver -p integration-tests
	target/release/apibench $(BENCH_ARGS)

# kube-scheduler throughput in upstream's scheduler_perf shapes against a
# real apiserver; table in target/bench-scheduler.md.
bench-scheduler: deps
	$(CARGO) build --release -p apiserver -p scheduler -p integration-tests
	target/release/schedbench $(BENCH_ARGS)

# kube-controller-manager with a real apiserver and scheduler, 1,000 nodes:
# a 10,000-replica Deployment created, rolled, deleted; a namespace of
# 10,000 objects deleted; table in target/bench-controllers.md.
bench-controllers: deps
	$(CARGO) build --release -p apiserver -p scheduler -p controller-manager -p integration-tests
	target/release/cmbench $(BENCH_ARGS)

# The kubelet on a real node (its own containerd, the project's images):
# pod startup latency created -> Running, one pod at a time and 30 at once,
# split by runtime operation from the kubelet's metrics, and its idle RSS
# and CPU with 30 pods running; table in target/bench-kubelet.md. Needs root.
bench-kubelet: deps images
	$(CARGO) build --release -p apiserver -p kubelet -p node-setup -p integration-tests
	target/release/kubeletbench $(BENCH_ARGS)

# cluster-dns: the real UDP server on loopback over 10,000 Services, 4
# clients asking A records for 5 s; queries/s and p50/p99/p999 latency,
# table in target/bench-dns.md.
# kube-proxy's rule programming (1k/10k Services x 2/10 endpoints, first
# sync and one added Service, nftables and iptables, each in a fresh
# network namespace; needs root), then the cluster DNS; tables in
# target/bench-proxy-rules.md, target/bench-proxy-iptables.md,
# target/bench-dns.md.
bench-proxy: deps
	$(CARGO) build --release -p kube-proxy -p cluster-dns
	target/release/proxybench
	target/release/proxybench-iptables
	target/release/dnsbench

bench-dns:
	$(CARGO) build --release -p cluster-dns
	target/release/dnsbench $(BENCH_ARGS)

# Whole clusters from the launcher, release builds: cold `cluster up` to
# nodes Ready and the example app answering (1 and 3 workers), every
# process's idle RSS and CPU after a settle time (--settle, 300 s), 100
# pods of one Deployment on 2 workers; table in target/bench-cluster.md.
# Needs root. BENCH_ARGS="--settle 60s" shortens it.
bench-cluster: deps images
	$(CARGO) build --release -p apiserver -p scheduler -p controller-manager -p kubelet -p kube-proxy -p kubectl -p node-setup -p cluster -p integration-tests --bins
	target/release/clusterbench $(BENCH_ARGS)

# The linearizability and watch check with 10x CI's operations per phase.
bench-history: deps
	$(CARGO) build -p store
	STORE_HISTORY_OPS=$${STORE_HISTORY_OPS:-8000} $(CARGO) test -p integration-tests --test store_history -- --nocapture

# `make up`: a cluster from the launcher (target/debug/cluster): one
# control plane and one worker in its own network namespace by default
# (`make up NODES=3 CONTROL_PLANES=3` for more, CLUSTER_CONFIG=file for a
# config), the cluster DNS, and the example app from examples/ answering;
# prints the curl and KUBECONFIG lines. Needs root. State under
# /var/lib/kubelite/$(CLUSTER_NAME).
up: deps images
	$(CARGO) build --workspace --bins
	@CLUSTER_NAME="$(CLUSTER_NAME)" NODES="$(NODES)" CONTROL_PLANES="$(CONTROL_PLANES)" CLUSTER_CONFIG="$(CLUSTER_CONFIG)" bash scripts/up.sh

# Stops every process of the cluster and removes every trace of it
# (network namespaces, bridge, routes, mounts, cgroups, state).
down:
	@if [ -x target/debug/cluster ]; then target/debug/cluster --name "$(CLUSTER_NAME)" down; fi

clean: down
	$(CARGO) clean
