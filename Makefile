# netray — the two commands of the README, and a few more.
#   make demo   build, then run the end-to-end demo against the built-in lab
#   make test   build, then run every test (what CI runs)
#   make test-kernels  the kernel matrix: a subset of the tests on this kernel and on Debian 12's
#               6.1 and 6.12 under qemu (installs qemu, the kernels and virtme-ng; ~40 min)
#   make bench  per-packet cost of the kernel programs (BPF_PROG_TEST_RUN),
#               capture to a file beside tcpdump (netray bench dump, ~3 min),
#               and the daemon's API (rule adds/s, reads/s, POST to first drop)

CARGO ?= cargo
NETRAY := target/release/netray

.PHONY: all deps build demo test test-kernels bench clean

all: build

deps:
	@bash setup/deps.sh

build: deps
	$(CARGO) build --release --locked -p netray-cli

demo: build
	$(NETRAY) demo

# Tests need root and the real kernel; they create their own namespaces and pins.
test: deps
	$(CARGO) build --release --locked -p netray-cli
	NETRAY_BIN=$(CURDIR)/$(NETRAY) $(CARGO) test --release --locked --workspace --no-fail-fast -- --test-threads=4

# tests/kernels/subset says what runs on each kernel; setup/kernels.sh installs what it needs.
test-kernels: deps
	bash tests/kernels/run

bench: build
	$(NETRAY) bench
	$(NETRAY) bench dump
	$(CARGO) run --release --locked -p netray-daemon --example daemon_bench

clean:
	$(CARGO) clean
