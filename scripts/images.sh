#!/usr/bin/env bash
# `make images`: the project's container images, built here with no
# network, into a registry storage dir (default target/images/registry)
# that tests and `make up` serve with a local docker-registry.
#
# 1. pause, agnhost and cluster-dns as static binaries: glibc with crt-static (the
#    toolchain has no musl target), in their own target dir so the
#    workspace's build cache keeps its RUSTFLAGS; small (no debug info,
#    stripped, LTO, panic=abort).
# 2. node-setup writes reproducible OCI layouts and pushes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-target}
images_target_dir="$target_dir/images-build"
triple=x86_64-unknown-linux-gnu
registry_dir=${REGISTRY_DIR:-$target_dir/images/registry}
export CARGO_INCREMENTAL=0

RUSTFLAGS="-C target-feature=+crt-static" \
CARGO_PROFILE_RELEASE_DEBUG=0 \
CARGO_PROFILE_RELEASE_STRIP=symbols \
CARGO_PROFILE_RELEASE_LTO=true \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
  "$cargo" build --release -p pause -p agnhost -p cluster-dns --target "$triple" --target-dir "$images_target_dir"

bin_dir="$images_target_dir/$triple/release"
for bin in pause agnhost cluster-dns; do
  if ! file "$bin_dir/$bin" | grep -q "static"; then
    echo "images: $bin_dir/$bin is not statically linked" >&2
    exit 1
  fi
done

"$cargo" build -p node-setup
"$target_dir/debug/node-setup" images \
  --bin-dir "$bin_dir" \
  --busybox /bin/busybox \
  --registry-dir "$registry_dir" \
  --layout-dir "$target_dir/images/oci"
