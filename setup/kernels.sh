#!/usr/bin/env bash
# Installs what the kernel matrix (make test-kernels) needs, as root on Debian 12:
# qemu-system-x86 (busybox for vng's initramfs, jq for the runner), the newest Debian 12 kernels of the 6.1 and 6.12 series (unsigned
# images, so vng can boot them from /boot), and virtme-ng pinned from PyPI in a private
# venv. Prints the kernel versions to test, one a line. Does nothing twice.
set -euo pipefail

VENV=${NETRAY_VNG_VENV:-/var/cache/netray/vng-venv}
VNG_VERSION=1.42

if [ "$(id -u)" != 0 ]; then
    echo "setup/kernels.sh: run as root (it installs packages and kernels)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# The newest package of a series, by version; apt's lists must be fresh enough to know it.
newest() { apt-cache search --names-only "$1" | cut -d' ' -f1 | sort -V | tail -1; }

apt_updated=0
ensure_updated() { [ $apt_updated = 1 ] || { apt-get update -qq >&2; apt_updated=1; }; }

ensure_updated
k61=$(newest '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$')
k612=$(newest '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$')
if [ -z "$k61" ] || [ -z "$k612" ]; then
    echo "setup/kernels.sh: apt knows no linux-image-6.1.0-*-amd64-unsigned or 6.12.*+deb12 package: is bookworm in the apt sources?" >&2
    exit 1
fi

missing=()
for p in qemu-system-x86 busybox-static jq "$k61" "$k612"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    # No initramfs needed (vng boots the image with the host's filesystem over virtiofs/9p),
    # and no bootloader change: these kernels are only for guests.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if ! "$VENV/bin/vng" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
    echo "setup: installing virtme-ng $VNG_VERSION into $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION" >&2
fi

# The versions as /boot names them: linux-image-6.1.0-57-amd64-unsigned -> 6.1.0-57-amd64
for p in "$k61" "$k612"; do
    v=${p#linux-image-}
    echo "${v%-unsigned}"
done
