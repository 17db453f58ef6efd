#!/usr/bin/env bash
# Installs what netray needs to build, test and run on Debian (as root):
# clang-19 for the BPF programs, libelf/zlib for libbpf, libpcap, iproute2 for
# the lab, tcpdump/tshark to check captures, man-db to render `netray man`,
# promtool to check /metrics, tmux to check `netray top`'s screen, and
# schemathesis and kubernetes-validate (PyPI, pinned, in private venvs) for the
# daemon's schema test and the manifests' validation.
# pmacct (nfacctd) receives the IPFIX export in its tests.
# podman, buildah and debootstrap build the OCI image (make image, setup/image.sh);
# runc runs it in the image test where crun cannot (hybrid cgroups).
# Does nothing when all is there.
set -euo pipefail

packages=(clang-19 llvm-19 libelf-dev zlib1g-dev libpcap-dev pkg-config make gcc
          iproute2 linux-libc-dev bpftool tcpdump tshark iputils-ping procps
          python3 python3-venv util-linux man-db pmacct tmux
          podman buildah debootstrap runc)

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

# Python tools the tests run, each pinned in a venv of its own under
# /var/cache/netray (the path names the version, so a new pin gets a new venv):
#   schemathesis        crates/netray-daemon/tests/schema.rs ($NETRAY_SCHEMATHESIS)
#   kubernetes-validate crates/netray-cli/tests/deploy.rs: deploy/kubernetes
#                       against the Kubernetes schema
# pip_tool PACKAGE VERSION COMMAND: installs PACKAGE==VERSION, whose COMMAND
# prints the version, unless it is there.
pip_tool() {
    local package=$1 version=$2 command=$3 venv=/var/cache/netray/$1-$2
    "$venv/bin/$command" --version 2>/dev/null | grep -q "$version" && return
    if [ "$(id -u)" != 0 ]; then
        echo "setup: $package is missing in $venv — run as root" >&2
        exit 1
    fi
    mkdir -p /var/cache/netray
    (
        # One installer at a time (several work trees may run this at once).
        flock 9
        if ! "$venv/bin/$command" --version 2>/dev/null | grep -q "$version"; then
            echo "setup: installing $package==$version into $venv" >&2
            rm -rf "$venv"
            /usr/bin/python3 -m venv "$venv"
            "$venv/bin/pip" install -q --disable-pip-version-check "$package==$version"
            "$venv/bin/$command" --version >/dev/null
        fi
    ) 9>"/var/cache/netray/$package.lock"
}
pip_tool schemathesis 4.32.5 st
pip_tool kubernetes-validate 1.37.0 kubernetes-validate
