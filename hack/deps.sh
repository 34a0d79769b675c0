#!/usr/bin/env bash
# deps.sh installs what the demo, the cluster scripts and the end-to-end tests
# need (the real container runtimes of test/runtime_test.go among them),
# downloads the Go modules and builds crictl. It is idempotent: when
# everything is present it runs no apt-get and no go install at all and
# `go mod download` is a cache hit, so `make test` and `make demo` can call it
# every time.
set -euo pipefail

cd "$(dirname "$0")/.."

# command -> Debian package that provides it. Only commands our own scripts
# or the plugins call are listed: ip and tc (iproute2; the e2e tests read
# the bandwidth plugin's qdiscs with tc), iptables (the chained portmap and
# firewall plugins; ip6tables comes with it), ping (ping matrix), iperf3 (throughput),
# ethtool (make bench's offload variants), nft (pkg/probe's tests drop one
# prober's echoes by ICMP ID),
# jq (parsing cnitool/overlayctl JSON), curl (e2e writes a bad config through
# etcd's JSON gateway), pgrep/ps (procps), and the runtimes the e2e tests
# drive: podman 4.3 (CNI backend; conmon comes with it), containerd 1.6 (ctr,
# the CRI plugin, containerd-shim-runc-v2) and runc, which podman uses too
# (crun 1.8 refuses this kernel's hybrid cgroup layout), nsenter (util-linux).
declare -A PKG_FOR=(
	[ip]=iproute2
	[iptables]=iptables
	[ping]=iputils-ping
	[iperf3]=iperf3
	[ethtool]=ethtool
	[nft]=nftables
	[jq]=jq
	[curl]=curl
	[pgrep]=procps
	[ss]=iproute2
	[tc]=iproute2
	[podman]=podman
	[containerd]=containerd
	[ctr]=containerd
	[containerd-shim-runc-v2]=containerd
	[runc]=runc
	[nsenter]=util-linux
)

# Packages checked by name, not by a command: the runtime tests copy
# /bin/busybox into container root filesystems and a sandbox image, so it
# must be the static build (the plain busybox package is dynamic).
STATUS_PKGS=(busybox-static)

# crictl drives containerd's CRI plugin in the e2e tests. Debian 12 has no
# package for it, so it is built from the Go module proxy at a pinned version
# with `go install pkg@version`: that builds it against cri-tools' own go.mod
# and leaves this module's dependencies alone (a `tool` line in our go.mod
# would pull the Kubernetes modules into our build list and move shared ones
# such as grpc and otel). v1.34.0 speaks the CRI v1 API that containerd 1.6
# serves.
CRICTL_MODULE=sigs.k8s.io/cri-tools
CRICTL_VERSION=v1.34.0
CRICTL_BIN=/usr/local/bin/crictl

ensure_go() {
	# A plain root shell may not have /usr/local/go/bin on PATH.
	if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	if ! command -v go >/dev/null 2>&1; then
		echo "deps: Go not found (looked on PATH and in /usr/local/go/bin)." >&2
		echo "deps: install Go (the version in go.mod) to /usr/local/go and retry." >&2
		exit 1
	fi
}

missing_packages() {
	local cmd pkg
	local -A want=()
	for cmd in "${!PKG_FOR[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || want[${PKG_FOR[$cmd]}]=1
	done
	for pkg in "${STATUS_PKGS[@]}"; do
		[[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || want[$pkg]=1
	done
	echo "${!want[@]}"
}

install_packages() {
	local pkgs
	read -r -a pkgs <<<"$(missing_packages)"
	if ((${#pkgs[@]} == 0)); then
		return 0
	fi
	if [[ $EUID -ne 0 ]]; then
		echo "deps: missing packages ${pkgs[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# The package lists of a fresh machine may be empty or stale: refresh
	# them, but only now that something must actually be installed.
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	local still
	still="$(missing_packages)"
	if [[ -n "$still" ]]; then
		echo "deps: still missing after install: $still" >&2
		exit 1
	fi
}

# crictl_installed: CRICTL_BIN exists and was built from the pinned version
# (the binary's embedded module info; `crictl --version` says "unknown" for a
# go install build).
crictl_installed() {
	local info
	[[ -x "$CRICTL_BIN" ]] || return 1
	# Read whole before grep: grep -q stopping early under pipefail would
	# turn go's SIGPIPE into "not installed".
	info="$(go version -m "$CRICTL_BIN" 2>/dev/null)" || return 1
	grep -qE "^[[:space:]]+mod[[:space:]]+$CRICTL_MODULE[[:space:]]+$CRICTL_VERSION([[:space:]]|\$)" <<<"$info"
}

install_crictl() {
	crictl_installed && return 0
	if [[ $EUID -ne 0 ]]; then
		echo "deps: crictl $CRICTL_VERSION missing in $CRICTL_BIN; run as root to build it" >&2
		exit 1
	fi
	echo "deps: building crictl $CRICTL_VERSION into $(dirname "$CRICTL_BIN")"
	local log
	log="$(mktemp)"
	# GOFLAGS meant for this module (the Makefile's, or -mod=...) must not
	# apply to another module's build. The -X gives `crictl --version` the
	# version its own Makefile would stamp.
	if ! GOFLAGS= GOBIN="$(dirname "$CRICTL_BIN")" \
		go install -ldflags "-X $CRICTL_MODULE/pkg/version.Version=$CRICTL_VERSION" \
		"$CRICTL_MODULE/cmd/crictl@$CRICTL_VERSION" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		echo "deps: building crictl failed (it needs the Go module proxy)" >&2
		exit 1
	fi
	rm -f "$log"
	crictl_installed || { echo "deps: $CRICTL_BIN is not $CRICTL_MODULE $CRICTL_VERSION after go install" >&2; exit 1; }
}

ensure_go
install_packages
install_crictl
go mod download
