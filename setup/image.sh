#!/usr/bin/env bash
# make image: builds the OCI image localhost/netray from Containerfile with podman, without pulling
# from any container registry (podman build --pull=never). Its base images are Debian root
# filesystems made with debootstrap from the Debian mirror and imported into podman:
#   netray-base        minbase + the libraries netray links           (runtime stage)
#   netray-build-base  minbase + setup/deps.sh's build packages        (build stage)
# cached under /var/cache/netray/image/SUITE-YYYYMMDD (the day debootstrap ran): later runs reuse
# the newest cache of the suite; NETRAY_IMAGE_REFRESH=1 makes a new one (Debian's updates).
#
#   setup/image.sh                  the real multi-stage build: cargo builds netray in the build
#                                   stage with the toolchain `make` uses (mounted read-only)
#   setup/image.sh --prebuilt FILE  the runtime stage around a binary `make` built (same toolchain,
#                                   same Debian): what the image test builds, in seconds
#   --tag TAG                       default localhost/netray:latest (also tagged :VERSION)
#
# podman builds with chroot isolation: the build's RUN steps need no OCI runtime, so the image
# builds also where containers cannot run. As root. Prints the image's id and size at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup/image.sh: $*" >&2; }
die() { say "$*"; exit 1; }

suite=${NETRAY_IMAGE_SUITE:-bookworm}
mirror=${NETRAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${NETRAY_IMAGE_CACHE:-/var/cache/netray/image}
tag=localhost/netray:latest
prebuilt=
while [ $# -gt 0 ]; do
    case $1 in
        --prebuilt) prebuilt=${2:?--prebuilt needs the path of a netray binary}; shift 2 ;;
        --tag) tag=${2:?--tag needs a name}; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see setup/image.sh --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run as root (podman imports and debootstrap need it): sudo make image"
for t in podman debootstrap; do
    command -v "$t" >/dev/null || die "$t is missing: run setup/deps.sh (make deps) to install podman, buildah and debootstrap"
done
[ -z "$prebuilt" ] || [ -x "$prebuilt" ] || die "--prebuilt $prebuilt: no such executable (run make build first)"

# The packages of the two bases. The build base's are setup/deps.sh's build packages.
runtime_packages=libelf1,libpcap0.8,zlib1g
build_packages=clang-19,llvm-19,libelf-dev,zlib1g-dev,libpcap-dev,pkg-config,make,gcc,libc6-dev,linux-libc-dev,bpftool,binutils,ca-certificates

mkdir -p "$cache"

# The cache directory of this suite: the newest complete one, or a new one named by today's date.
dir=
if [ "${NETRAY_IMAGE_REFRESH:-0}" != 1 ]; then
    dir=$(find "$cache" -maxdepth 1 -name "$suite-[0-9]*" -type d | sort | tail -n 1)
fi
dir=${dir:-$cache/$suite-$(date -u +%Y%m%d)}
base_tag=$(basename "$dir")

# base NAME PACKAGES: the debootstrap root filesystem $dir/NAME, imported as localhost/NAME:$base_tag.
# One maker of a base at a time (tests and work trees run this in parallel).
base() {
    (flock 9; make_base "$@") 9>"$cache/$1.lock"
}
make_base() {
    local name=$1 packages=$2 root=$dir/$1 started=$SECONDS
    podman image exists "localhost/$name:$base_tag" && return
    if [ ! -e "$root.complete" ]; then
        say "debootstrap $suite into $root ($packages) from $mirror"
        rm -rf "$root" && mkdir -p "$dir"
        debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 ||
            die "debootstrap failed (log: $root.log): $(tail -n 3 "$root.log")"
        touch "$root.complete"
    fi
    # Without apt's package cache and lists: the image never runs apt.
    tar -C "$root" --exclude=./var/cache/apt/archives --exclude=./var/lib/apt/lists -c . |
        podman import --quiet - "localhost/$name:$base_tag" >/dev/null
    say "localhost/$name:$base_tag ready in $((SECONDS - started)) s"
}

started=$SECONDS
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
args=(--isolation=chroot --pull=never -f Containerfile -t "$tag"
      --build-arg "BASE_TAG=$base_tag" --build-arg "VERSION=$version"
      --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
      --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
# The default tag also gets the version's.
[ "$tag" != localhost/netray:latest ] || args+=(-t "localhost/netray:$version")
base netray-base "$runtime_packages"
if [ -n "$prebuilt" ]; then
    mkdir -p target/image
    strip --strip-debug -o target/image/netray.tmp "$prebuilt"
    mv target/image/netray.tmp target/image/netray
    args+=(--build-arg BINARY=prebuilt)
else
    base netray-build-base "$build_packages"
    toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
    rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    # The image's own target directory, per toolchain: the second build is incremental.
    target=$cache/target-$toolchain
    mkdir -p "$target"
    args+=(--build-arg BINARY=build --build-arg "RUST_TOOLCHAIN=$toolchain"
           --volume "$rustup_home:/root/.rustup:ro" --volume "$cargo_home/bin:/root/.cargo/bin:ro"
           --volume "$cargo_home/registry:/root/.cargo/registry" --volume "$target:/build/target")
    say "building netray in the build stage with $toolchain ($(rustc --version))"
fi
podman build "${args[@]}" . >&2

id=$(podman image inspect --format '{{.Id}}' "$tag")
size=$(podman image inspect --format '{{.Size}}' "$tag")
say "built in $((SECONDS - started)) s"
echo "$tag id ${id:0:12} size $((size / 1000000)) MB (bases: $base_tag)"
