#!/usr/bin/env bash
# deps.sh installs what the demo, the cluster scripts and the end-to-end tests
# need, and downloads the Go modules. It is idempotent: when everything is
# present it runs no apt-get at all and `go mod download` is a cache hit, so
# `make test` and `make demo` can call it every time.
set -euo pipefail

cd "$(dirname "$0")/.."

# command -> Debian package that provides it. Only commands our own scripts
# or the plugins call are listed: ip and tc (iproute2; the e2e tests read
# the bandwidth plugin's qdiscs with tc), iptables (the chained portmap and
# firewall plugins; ip6tables comes with it), ping (ping matrix), iperf3 (throughput),
# jq (parsing cnitool/overlayctl JSON), curl (e2e writes a bad config through
# etcd's JSON gateway), pgrep/ps (procps).
declare -A PKG_FOR=(
	[ip]=iproute2
	[iptables]=iptables
	[ping]=iputils-ping
	[iperf3]=iperf3
	[jq]=jq
	[curl]=curl
	[pgrep]=procps
	[ss]=iproute2
	[tc]=iproute2
)

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
	local cmd
	local -A want=()
	for cmd in "${!PKG_FOR[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || want[${PKG_FOR[$cmd]}]=1
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

ensure_go
install_packages
go mod download
