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
  # vm-boot=firmware: GPT (sfdisk, partx), the ESP written without mounting it (mkfs.fat, mtools),
  # GRUB's BIOS and UEFI modules (the -bin packages only: grub-pc would install GRUB on this host's
  # disk), OVMF to boot it under UEFI, virt-xml-validate (and the xmllint it calls) for the
  # libvirt domain XML
  fdisk dosfstools mtools grub-pc-bin grub-efi-amd64-bin ovmf libvirt-clients libxml2-utils
  # layers: OCI reference tools, storage drivers, zstd
  libzstd-dev libdeflate-dev zstd skopeo umoci buildah fuse-overlayfs unionfs-fuse fuse3 btrfs-progs attr
  # container pass: the runtime that starts the bundle and every build step; rootless builds
  # (newuidmap/newgidmap map an image's users onto a user's subordinate ids)
  runc uidmap
  # imgbench run --container-network bridge: a namespace, a veth pair, a bridge and NAT rules
  iproute2 iptables
  # ADD of an http(s) URL (curl) or a git repository (git), fetched on the build host
  curl git
  # benchmarks (virt-customize: bench/build-mysql's VM reference)
  # (apt-cacher-ng: bench/build-from-nothing serves every contender from a local mirror)
  time bc libguestfs-tools apt-cacher-ng
  # imgbench run: the workloads natively and their clients on the host
  sysbench fio hpcc redis-server redis-tools iperf3 mariadb-server nuttcp qperf
  # registry tests: a real registry (distribution), htpasswd for its basic auth, openssl for its CA
  docker-registry apache2-utils openssl
  # imgbench report --html: the tests render the page in a real browser (headless)
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
elif [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}) and not root; run this script as root" >&2
  exit 1
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The unprivileged user the tests run a rootless build as: no login, no home, and a range of
# subordinate ids (what a rootless build maps an image's users onto). Only made when root.
test_user=imgbench-rootless
if [ "$(id -u)" -eq 0 ] && ! id "$test_user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$test_user"
fi
if [ "$(id -u)" -eq 0 ] && ! grep -q "^$test_user:" /etc/subuid 2>/dev/null; then
  usermod --add-subuids 1200000-1265535 --add-subgids 1200000-1265535 "$test_user"
fi
