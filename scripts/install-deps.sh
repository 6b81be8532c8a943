#!/usr/bin/env bash
# Installs the Debian packages imgbench needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and apt is only asked when something is missing.
set -euo pipefail

packages=(
  # build
  pkg-config zlib1g-dev libarchive-dev libguestfs-dev
  # qcow2 reference tools and VM side
  qemu-utils qemu-system-x86 e2fsprogs
  # VM pass: Debian bases, loop mounts, a kernel to boot disks with (libguestfs needs one in /boot too)
  mmdebstrap util-linux mount linux-image-amd64 busybox-static
  # layers: OCI reference tools, storage drivers, zstd
  libzstd-dev libdeflate-dev zstd skopeo umoci buildah fuse-overlayfs unionfs-fuse fuse3 btrfs-progs attr
  # container pass: the runtime that starts the bundle
  runc
  # benchmarks (virt-customize: bench/build-mysql's VM reference)
  time bc libguestfs-tools
  # imgbench run: the workloads natively and their clients on the host
  sysbench fio hpcc redis-server redis-tools iperf3 mariadb-server
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}) and not root; run this script as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
