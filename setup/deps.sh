#!/usr/bin/env bash
# Installs what netray needs to build, test and run on Debian (as root):
# clang-19 for the BPF programs, libelf/zlib for libbpf, libpcap, iproute2 for
# the lab, tcpdump/tshark to check captures. Does nothing when all is there.
set -euo pipefail

packages=(clang-19 llvm-19 libelf-dev zlib1g-dev libpcap-dev pkg-config make gcc
          iproute2 linux-libc-dev bpftool tcpdump tshark iputils-ping procps)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages: ${missing[*]} — run as root (or install them yourself)" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # tshark asks whether non-root users may capture: answer no, quietly.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
fi

# bpffs and tracefs, which netray also mounts itself when missing.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
