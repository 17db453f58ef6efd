#!/usr/bin/env bash
# Installs what netray needs to build, test and run on Debian (as root):
# clang-19 for the BPF programs, libelf/zlib for libbpf, libpcap, iproute2 for
# the lab, tcpdump/tshark to check captures, man-db to render `netray man`,
# promtool to check /metrics, and
# schemathesis (PyPI, pinned, in a private venv) for the daemon's schema test.
# pmacct (nfacctd) receives the IPFIX export in its tests.
# Does nothing when all is there.
set -euo pipefail

packages=(clang-19 llvm-19 libelf-dev zlib1g-dev libpcap-dev pkg-config make gcc
          iproute2 linux-libc-dev bpftool tcpdump tshark iputils-ping procps
          python3 python3-venv util-linux man-db pmacct)

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

# promtool, which the metrics tests run on /metrics (`promtool check metrics`).
# Debian ships it in the prometheus package, whose installation would start a
# Prometheus server: only promtool is taken from the package, into a private
# directory (NETRAY_PROMTOOL names another promtool).
promtool_dir=/var/cache/netray/promtool
if [ -z "${NETRAY_PROMTOOL:-}" ] && [ ! -x "$promtool_dir/promtool" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: promtool missing in $promtool_dir — run as root" >&2
        exit 1
    fi
    echo "setup: extracting promtool from Debian's prometheus package into $promtool_dir" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) ||
        { apt-get update -qq && (cd "$tmp" && apt-get download -qq prometheus >/dev/null); }
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    mkdir -p "$promtool_dir"
    install -m 0755 "$tmp/x/usr/bin/promtool" "$promtool_dir/promtool"
    rm -rf "$tmp"
    trap - EXIT
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
fi

# bpffs and tracefs, which netray also mounts itself when missing.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true

# schemathesis for crates/netray-daemon/tests/schema.rs, pinned, in a venv of
# its own (the path names the version, so a new pin gets a new venv). The test
# finds it there, or at $NETRAY_SCHEMATHESIS.
SCHEMATHESIS_VERSION=4.32.5
venv=/var/cache/netray/schemathesis-$SCHEMATHESIS_VERSION
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: schemathesis is missing in $venv — run as root" >&2
        exit 1
    fi
    mkdir -p /var/cache/netray
    (
        # One installer at a time (several work trees may run this at once).
        flock 9
        if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
            echo "setup: installing schemathesis==$SCHEMATHESIS_VERSION into $venv" >&2
            rm -rf "$venv"
            /usr/bin/python3 -m venv "$venv"
            "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
            "$venv/bin/st" --version >/dev/null
        fi
    ) 9>/var/cache/netray/schemathesis.lock
fi
