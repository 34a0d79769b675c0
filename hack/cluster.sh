#!/usr/bin/env bash
# cluster.sh simulates a multi-host overlay cluster on one machine, every
# "machine" being a network namespace:
#
#   PREFIX-fab            fabric: bridge fabric0 198.18.0.1/24, runs devetcd
#   PREFIX-hN             host N: eth0 198.18.0.(10+N)/24, default route via
#                         the fabric, runs overlayd
#   PREFIX-hN-cM          container M on host N, attached with cnitool
#   PREFIX-lan            a "legacy LAN" machine behind a gateway edge host
#                         (cluster_lan_add), wired to that host by a veth
#
# PREFIX is unique per cluster (ovl-<random>), so several clusters, a test run
# and a demo can coexist. Nothing is configured in the machine's root
# namespace: veth pairs are created directly inside the namespaces.
#
# Every namespace created and every process started is appended to
# STATE_DIR/state as it happens, so teardown removes exactly what this
# cluster made, even after a half-finished start:
#
#   hack/cluster.sh down STATE_DIR
#
# As a library (sourced by hack/demo.sh) it provides cluster_* functions; see
# each function's comment.
set -euo pipefail

CLUSTER_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${OVL_BIN:=$CLUSTER_REPO/bin}"
OVL_ETCD_IP=198.18.0.1
OVL_ETCD="http://$OVL_ETCD_IP:2379"
OVL_NETWORK="${OVL_NETWORK:-default}"

# --- state -----------------------------------------------------------------

# cluster_init creates the state dir and a unique prefix. It sets OVL_STATE
# (the dir) and OVL_PREFIX.
cluster_init() {
	local b
	for b in overlayd overlayctl overlay overlay-ipam devetcd cnitool; do
		if [[ ! -x "$OVL_BIN/$b" ]]; then
			echo "cluster: $OVL_BIN/$b is missing; run 'make build' first" >&2
			return 1
		fi
	done
	OVL_STATE="$(mktemp -d /tmp/ovl-cluster.XXXXXX)"
	OVL_PREFIX="ovl-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
	echo "prefix $OVL_PREFIX" >"$OVL_STATE/state"
	record "bin $OVL_BIN"
}

# record appends one line to the state file.
record() { echo "$*" >>"$OVL_STATE/state"; }

# proc_start_time prints a process's start time (clock ticks since boot), so
# teardown can tell our process from a later one that reused its PID.
proc_start_time() {
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	# Field 22; fields after the ")" closing the command name are plain.
	stat="${stat##*) }"
	awk '{print $20}' <<<"$stat"
}

# --- namespaces --------------------------------------------------------------

netns_add() {
	ip netns add "$1"
	record "netns $1"
	ip -n "$1" link set lo up
}

# cluster_fabric_up creates the fabric namespace and its bridge.
cluster_fabric_up() {
	local fab="$OVL_PREFIX-fab"
	netns_add "$fab"
	ip -n "$fab" link add fabric0 type bridge
	ip -n "$fab" addr add 198.18.0.1/24 dev fabric0
	ip -n "$fab" link set fabric0 up
}

# host_ns N prints host N's namespace name.
host_ns() { echo "$OVL_PREFIX-h$1"; }

# host_ip N prints host N's underlay address.
host_ip() { echo "198.18.0.$((10 + $1))"; }

# host_dir N prints host N's private directory (run dir, state dir, CNI).
host_dir() { echo "$OVL_STATE/h$1"; }

# cluster_host_add N creates host N: namespace, eth0 wired to the fabric,
# and a conflist whose runDir/dataDir point into the host's own directory.
cluster_host_add() {
	local n="$1" ns fab="$OVL_PREFIX-fab" dir
	ns="$(host_ns "$n")"
	dir="$(host_dir "$n")"
	netns_add "$ns"
	# Created inside the fabric with its peer moved straight into the host:
	# the root namespace never sees either end.
	ip -n "$fab" link add "vh$n" type veth peer name eth0 netns "$ns"
	ip -n "$fab" link set "vh$n" master fabric0 up
	ip -n "$ns" addr add "$(host_ip "$n")/24" dev eth0
	ip -n "$ns" link set eth0 up
	# A default route makes overlayd's default-route iface detection work too.
	ip -n "$ns" route add default via 198.18.0.1
	# Deny forwarding by default, as Docker and Kubernetes hosts do: the
	# demo then also shows overlayd's own FORWARD rules at work.
	ip netns exec "$ns" iptables -P FORWARD DROP
	mkdir -p "$dir/run" "$dir/state" "$dir/cni" "$dir/net.d"
	cat >"$dir/net.d/10-overlay.conflist" <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "overlay",
		  "plugins": [
		    {
		      "type": "overlay",
		      "network": "$OVL_NETWORK",
		      "runDir": "$dir/run",
		      "ipam": {"type": "overlay-ipam", "dataDir": "$dir/cni"}
		    }
		  ]
		}
	EOF
}

# --- processes -------------------------------------------------------------

# start_in_ns NS LOG CMD... starts CMD in namespace NS in the background with
# output to LOG, records its PID and prints it. `ip netns exec` execs the
# command in place, so the PID is the command's own.
start_in_ns() {
	local ns="$1" log="$2" pid start
	shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
	pid=$!
	start="$(proc_start_time "$pid" || echo 0)"
	record "pid $pid $start $(basename "$1")"
	echo "$pid"
}

# wait_for TIMEOUT_S DESCRIPTION CMD... polls CMD every 0.2s until it
# succeeds; fails with DESCRIPTION after TIMEOUT_S seconds.
wait_for() {
	local timeout="$1" what="$2" deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo "cluster: timed out after ${timeout}s waiting for $what" >&2
			return 1
		fi
		sleep 0.2
	done
}

# cluster_etcd_up starts devetcd in the fabric and waits until it serves.
cluster_etcd_up() {
	local log="$OVL_STATE/devetcd.log" pid
	mkdir -p "$OVL_STATE/etcd"
	pid="$(start_in_ns "$OVL_PREFIX-fab" "$log" "$OVL_BIN/devetcd" \
		--data-dir "$OVL_STATE/etcd" \
		--listen-client "$OVL_ETCD" --listen-peer http://198.18.0.1:2380)"
	wait_for 30 "devetcd (log: $log)" etcd_ready "$pid" "$log"
}

etcd_ready() {
	kill -0 "$1" || { echo "devetcd exited" >&2; return 0; }
	grep -q "devetcd: ready on" "$2"
}

# cluster_ctl ARGS... runs overlayctl inside the fabric, where etcd is.
cluster_ctl() {
	ip netns exec "$OVL_PREFIX-fab" "$OVL_BIN/overlayctl" --etcd-endpoints "$OVL_ETCD" "$@"
}

# cluster_overlayd_start N [FLAGS...] starts overlayd on host N with extra
# FLAGS (e.g. --mode edge); log in HOSTDIR/overlayd.log.
cluster_overlayd_start() {
	local n="$1" dir
	shift
	dir="$(host_dir "$n")"
	start_in_ns "$(host_ns "$n")" "$dir/overlayd.log" "$OVL_BIN/overlayd" \
		--etcd-endpoints "$OVL_ETCD" --network "$OVL_NETWORK" --iface eth0 \
		--run-dir "$dir/run" --state-dir "$dir/state" --hostname "h$n" --log-level info \
		"$@" >"$dir/overlayd.pid"
}

# host_file N prints the path of host N's host file.
host_file() { echo "$(host_dir "$1")/run/$OVL_NETWORK.json"; }

# cluster_wait_host N TIMEOUT_S waits until overlayd on host N has written
# its host file; it fails at once if overlayd exits.
cluster_wait_host() {
	local n="$1" deadline pid log
	deadline=$((SECONDS + $2))
	pid="$(cat "$(host_dir "$n")/overlayd.pid")"
	log="$(host_dir "$n")/overlayd.log"
	until [[ -s "$(host_file "$n")" ]]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "overlayd on h$n exited: $(tail -n 1 "$log")" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			echo "overlayd on h$n wrote no host file within $2s (log: $log)" >&2
			return 1
		fi
		sleep 0.2
	done
}

# cluster_edge_address N prints the overlay address of edge host N (from its
# host file); it fails if host N is not an edge host.
cluster_edge_address() {
	jq -er 'select(.kind == "edge") | .address' "$(host_file "$1")"
}

# --- edge hosts: a legacy LAN behind a gateway -----------------------------------

# lan_ns prints the legacy LAN machine's namespace name.
lan_ns() { echo "$OVL_PREFIX-lan"; }

# cluster_lan_add N GW_ADDR/LEN ADDR/LEN DST puts a legacy machine (its own
# namespace, nothing of overlay installed) on a LAN behind host N, a gateway
# edge host: lan0 GW_ADDR/LEN on host N, veth to eth0 ADDR/LEN on the
# machine, whose only route beyond its LAN is DST via GW_ADDR.
cluster_lan_add() {
	local n="$1" gw="$2" addr="$3" dst="$4" ns hns
	ns="$(lan_ns)"
	hns="$(host_ns "$n")"
	netns_add "$ns"
	ip -n "$hns" link add lan0 type veth peer name eth0 netns "$ns"
	ip -n "$hns" addr add "$gw" dev lan0
	ip -n "$hns" link set lan0 up
	ip -n "$ns" addr add "$addr" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add "$dst" via "${gw%/*}"
}

# --- containers --------------------------------------------------------------

# container_ns N M prints container M of host N's namespace name.
container_ns() { echo "$OVL_PREFIX-h$1-c$2"; }

# cnitool_in_host N VERB NETNS runs cnitool on host N (so the plugins act in
# the host's namespace, as a runtime on that host would).
cnitool_in_host() {
	local n="$1" verb="$2" cns="$3" dir
	dir="$(host_dir "$n")"
	ip netns exec "$(host_ns "$n")" env CNI_PATH="$OVL_BIN" NETCONFPATH="$dir/net.d" \
		"$OVL_BIN/cnitool" "$verb" overlay "/var/run/netns/$cns"
}

# cluster_attach N M creates container M on host N, runs CNI ADD and prints
# the container's address (without prefix length).
cluster_attach() {
	local n="$1" m="$2" cns out log
	cns="$(container_ns "$n" "$m")"
	log="$(host_dir "$n")/cni-c$m.log"
	netns_add "$cns"
	record "container $n $cns"
	if ! out="$(cnitool_in_host "$n" add "$cns" 2>"$log")"; then
		echo "cluster: CNI ADD for $cns failed: $(tail -n 3 "$log")" >&2
		return 1
	fi
	echo "$out" >"$(host_dir "$n")/cni-c$m.json"
	jq -er '.ips[0].address | split("/")[0]' <<<"$out"
}

# --- teardown ----------------------------------------------------------------

# kill_recorded sends SIGTERM to every recorded PID that is still ours, waits
# up to 5s, then SIGKILLs the rest.
kill_recorded() {
	local state="$1" pids=() pid start _ deadline
	while read -r kind pid start _; do
		[[ "$kind" == pid ]] || continue
		# Skip PIDs that exited or were reused by someone else's process.
		[[ "$(proc_start_time "$pid" 2>/dev/null)" == "$start" ]] || continue
		pids+=("$pid")
		kill -TERM "$pid" 2>/dev/null || true
	done <"$state"
	deadline=$((SECONDS + 5))
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# cluster_down STATE_DIR tears down everything recorded in STATE_DIR/state.
# Each step is best-effort so one failure never leaves the rest behind.
cluster_down() {
	local dir="$1" state="$1/state" kind a b prefix
	if [[ ! -f "$state" ]]; then
		echo "cluster: no state file in $dir" >&2
		return 1
	fi
	prefix="$(awk '$1 == "prefix" {print $2}' "$state")"
	OVL_BIN="$(awk '$1 == "bin" {print $2}' "$state")"
	OVL_STATE="$dir" OVL_PREFIX="$prefix"
	kill_recorded "$state"
	# CNI DEL frees each container's address and removes its veth; it
	# needs no daemon, only the host namespace, which still exists here.
	while read -r kind a b; do
		[[ "$kind" == container ]] || continue
		cnitool_in_host "$a" del "$b" >/dev/null 2>&1 || true
	done <"$state"
	# Containers first (reverse creation order), fabric last.
	tac "$state" | while read -r kind a _; do
		[[ "$kind" == netns ]] || continue
		ip netns del "$a" 2>/dev/null || true
	done
	rm -rf "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	case "${1:-}" in
	down)
		[[ $# -eq 2 ]] || { echo "usage: $0 down STATE_DIR" >&2; exit 2; }
		cluster_down "$2"
		;;
	*)
		echo "usage: $0 down STATE_DIR   (create clusters with hack/demo.sh, KEEP=1 to keep one)" >&2
		exit 2
		;;
	esac
fi
