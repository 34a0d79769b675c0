#!/usr/bin/env bash
# demo.sh shows overlay working end to end on one machine: 3 simulated hosts
# (network namespaces on a shared fabric), a real etcd, a real overlayd per
# host, 2 containers per host attached through the real CNI plugins, then a
# cross-host ping matrix and an iperf3 run. Binaries come from bin/ (run it
# through `make demo`, which builds them).
#
# Then edge hosts: h4 is a "legacy VM" (overlayd --mode edge, no
# containers) and h5 a gateway edge host for a legacy LAN (--advertise).
# A service in container h1c1 (demo-echo) registers its container IP in
# etcd under a key of the demo's own, as a Dubbo provider would in
# ZooKeeper; a client on h4 looks it up and calls it, a container calls a
# service on h4, and a machine on the legacy LAN, with nothing but a static
# route, calls the container. Each side reports the caller address it saw,
# and the demo fails unless it is the caller's own (no NAT, no host IP).
# Last, a container calls a server outside the overlay (in the fabric, the
# "internet" of the demo): egress masquerade (ipMasq, on by default) makes
# it see the container's host.
#
#   make demo            # run, report, tear everything down
#   make demo KEEP=1     # keep the cluster up and print how to remove it
#
# Output is a short report; daemon and CNI logs go to files, whose paths and
# tails are printed only on failure.
set -euo pipefail

# shellcheck source=hack/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

HOSTS=3
CONTAINERS=2
CIDR=10.244.0.0/16
EDGE_CIDR=10.244.255.0/24
LEGACY_VM=4              # edge host h4: no containers
GATEWAY=5                # edge host h5: gateway for the legacy LAN
LEGACY_LAN=198.19.10.0/24
LAN_GW_IP=198.19.10.1    # h5's side of the LAN
LAN_IP=198.19.10.2       # the legacy LAN machine
ECHO_PORT=8080
OUTSIDE_ADDR=198.18.0.1:8081   # a server on the underlay, outside the overlay
REGISTRY_KEY=/demo/registry/echo
KEEP="${KEEP:-0}"
READY_TIMEOUT=60

declare -A CIP       # "N M" -> container IP
declare -A EDGE_IP   # N -> edge host N's overlay address
PROBLEMS=()
DEMO_ECHO="$OVL_BIN/demo-echo"

# --- output helpers ----------------------------------------------------------

# step prints a step's description; done_ok/die finish the line.
STEP_OPEN=0
step() {
	printf '  %-52s ' "$1"
	STEP_OPEN=1
}
done_ok() {
	echo "ok${1:+ ($1)}"
	STEP_OPEN=0
}
die() {
	echo "FAILED"
	STEP_OPEN=0
	echo "  -> $*"
	exit 1
}
problem() { PROBLEMS+=("$*"); }

# save_logs copies every log of the cluster out of the state dir (which
# teardown removes) and prints where, with the tail of each overlayd log.
save_logs() {
	local keep f n
	keep="$(mktemp -d /tmp/ovl-demo-logs.XXXXXX)"
	(cd "$OVL_STATE" && find . -name '*.log' -exec cp --parents {} "$keep" \;)
	echo
	echo "logs saved in $keep"
	for ((n = 1; n <= GATEWAY; n++)); do
		f="$keep/h$n/overlayd.log"
		[[ -f "$f" ]] || continue
		echo "--- tail of h$n overlayd log ($f)"
		tail -n 15 "$f"
	done
	for f in "$keep"/echo-*.log; do
		[[ -f "$f" ]] || continue
		echo "--- tail of demo-echo log ($f)"
		tail -n 5 "$f"
	done
}

on_exit() {
	local rc=$?
	trap - EXIT
	# A command that failed under set -e left its step's line open.
	((STEP_OPEN == 0)) || echo "FAILED"
	((rc != 130)) || echo "interrupted"
	[[ -n "${OVL_STATE:-}" ]] || exit "$rc"
	((rc == 0)) || save_logs
	if [[ "$KEEP" == 1 ]]; then
		echo
		echo "cluster kept (prefix $OVL_PREFIX). Try:"
		echo "  ip netns exec $(container_ns 2 1) ping -c 3 ${CIP[1 1]:-10.244.x.y}"
		echo "  ip netns exec $OVL_PREFIX-fab $OVL_BIN/overlayctl --etcd-endpoints $OVL_ETCD leases"
		echo "the legacy VM h$LEGACY_VM (${EDGE_IP[$LEGACY_VM]:-edge host}) calls the service it finds in the registry:"
		echo "  ip netns exec $(host_ns "$LEGACY_VM") $DEMO_ECHO call --registry $OVL_ETCD --key $REGISTRY_KEY"
		echo "and the legacy LAN machine ($LAN_IP) calls it by its container IP:"
		echo "  ip netns exec $(lan_ns) $DEMO_ECHO call --addr ${CIP[1 1]:-10.244.x.y}:$ECHO_PORT"
		echo "tear it down with:"
		echo "  hack/cluster.sh down $OVL_STATE      (or: make demo-down STATE=$OVL_STATE)"
	else
		cluster_down "$OVL_STATE" || echo "teardown incomplete: run hack/cluster.sh down $OVL_STATE" >&2
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- phases --------------------------------------------------------------------

bring_up() {
	local n m t0 ip
	if [[ ! -x "$DEMO_ECHO" ]]; then
		echo "demo: $DEMO_ECHO is missing; run 'make build' first" >&2
		return 1
	fi
	cluster_init
	echo "overlay demo: $HOSTS hosts x $CONTAINERS containers, network $OVL_NETWORK $CIDR;"
	echo "  edge hosts: h$LEGACY_VM legacy VM, h$GATEWAY gateway for legacy LAN $LEGACY_LAN"
	echo "  (namespaces $OVL_PREFIX-*, state $OVL_STATE)"

	step "fabric + devetcd ($OVL_ETCD)"
	cluster_fabric_up
	cluster_etcd_up || die "devetcd did not start; log $OVL_STATE/devetcd.log"
	done_ok

	step "hosts h1..h$GATEWAY on 198.18.0.0/24"
	for ((n = 1; n <= GATEWAY; n++)); do cluster_host_add "$n"; done
	done_ok

	step "overlayctl network set $OVL_NETWORK"
	cluster_ctl network set "$OVL_NETWORK" --cidr "$CIDR" --edge-cidr "$EDGE_CIDR" \
		>"$OVL_STATE/overlayctl.log" 2>&1 || die "$(tail -n 3 "$OVL_STATE/overlayctl.log")"
	done_ok "--cidr $CIDR --edge-cidr $EDGE_CIDR"

	step "overlayd on $HOSTS hosts, host files written"
	t0=$(date +%s.%N)
	for ((n = 1; n <= HOSTS; n++)); do cluster_overlayd_start "$n"; done
	for ((n = 1; n <= HOSTS; n++)); do
		cluster_wait_host "$n" "$READY_TIMEOUT" 2>"$OVL_STATE/wait.err" || die "$(cat "$OVL_STATE/wait.err")"
	done
	done_ok "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}')"

	# The LAN first: a gateway refuses to advertise a LAN it has no route to.
	step "legacy LAN $(lan_ns) $LAN_IP behind h$GATEWAY"
	cluster_lan_add "$GATEWAY" "$LAN_GW_IP/24" "$LAN_IP/24" "$CIDR"
	done_ok "route $CIDR via $LAN_GW_IP"

	step "overlayd --mode edge on h$LEGACY_VM, h$GATEWAY (--advertise)"
	cluster_overlayd_start "$LEGACY_VM" --mode edge
	cluster_overlayd_start "$GATEWAY" --mode edge --advertise "$LEGACY_LAN"
	for n in "$LEGACY_VM" "$GATEWAY"; do
		cluster_wait_host "$n" "$READY_TIMEOUT" 2>"$OVL_STATE/wait.err" || die "$(cat "$OVL_STATE/wait.err")"
		EDGE_IP[$n]="$(cluster_edge_address "$n")" || die "h$n's host file is no edge host's: $(cat "$(host_file "$n")")"
	done
	done_ok "h$LEGACY_VM ${EDGE_IP[$LEGACY_VM]}, h$GATEWAY ${EDGE_IP[$GATEWAY]}"


	step "$((HOSTS * CONTAINERS)) containers attached (cnitool add)"
	for ((n = 1; n <= HOSTS; n++)); do
		for ((m = 1; m <= CONTAINERS; m++)); do
			ip="$(cluster_attach "$n" "$m" 2>"$OVL_STATE/attach.err")" ||
				die "h${n}c$m: $(cat "$OVL_STATE/attach.err")"
			CIP[$n $m]="$ip"
		done
	done
	done_ok

	# The service's container reaches etcd, outside the overlay, through
	# its host's masquerade.
	step "echo service in h1c1 (demo-echo serve)"
	echo_serve "$(container_ns 1 1)" "$OVL_STATE/echo-h1c1.log" '^registered ' \
		--listen "${CIP[1 1]}:$ECHO_PORT" --name echo --registry "$OVL_ETCD" --key "$REGISTRY_KEY"
	done_ok "registered at $REGISTRY_KEY"

	step "echo service on the legacy VM h$LEGACY_VM"
	echo_serve "$(host_ns "$LEGACY_VM")" "$OVL_STATE/echo-h$LEGACY_VM.log" ' serving on ' \
		--listen "${EDGE_IP[$LEGACY_VM]}:$ECHO_PORT" --name legacy-vm
	done_ok "${EDGE_IP[$LEGACY_VM]}:$ECHO_PORT"

	step "echo service outside the overlay ($OUTSIDE_ADDR)"
	echo_serve "$OVL_PREFIX-fab" "$OVL_STATE/echo-outside.log" ' serving on ' \
		--listen "$OUTSIDE_ADDR" --name outside
	done_ok "in the fabric, the demo's internet"
}

# echo_serve NS LOG PATTERN ARGS... starts `demo-echo serve ARGS...` in NS
# (recorded for teardown) and waits until its LOG has a line matching
# PATTERN; it dies with the log's last line if the server exits first.
echo_serve() {
	local ns="$1" log="$2" pattern="$3" pid
	shift 3
	pid="$(start_in_ns "$ns" "$log" "$DEMO_ECHO" serve "$@")"
	wait_for 20 "demo-echo serve in $ns (log $log)" served "$pid" "$log" "$pattern" ||
		die "$(tail -n 1 "$log")"
	grep -q "$pattern" "$log" || die "demo-echo serve exited: $(tail -n 1 "$log")"
}

# served PID LOG PATTERN succeeds once LOG matches PATTERN or PID exited.
served() {
	! kill -0 "$1" 2>/dev/null || grep -q "$3" "$2"
}

# LEASES is `overlayctl leases -o json`, read once by report_hosts.
LEASES='[]'

# report_hosts prints each host's lease, VTEP and containers; an edge host's
# row has its overlay address (a /32 lease) instead of a subnet. The VTEP is
# read from the kernel (the device overlayd made) and checked against what
# the host published in its etcd lease.
report_hosts() {
	local n subnet dev mac lease_mac pub ips m
	LEASES="$(cluster_ctl leases --network "$OVL_NETWORK" -o json 2>"$OVL_STATE/leases.err")" || {
		problem "overlayctl leases failed: $(head -n 2 "$OVL_STATE/leases.err")"
		LEASES='[]'
	}
	echo
	printf '  %-4s %-13s %-18s %-11s %-19s %s\n' HOST UNDERLAY SUBNET VTEP "VTEP MAC" CONTAINERS
	for ((n = 1; n <= GATEWAY; n++)); do
		if ((n <= HOSTS)); then
			subnet="$(jq -r .subnet "$(host_file "$n")")"
			ips=""
			for ((m = 1; m <= CONTAINERS; m++)); do ips+="c$m=${CIP[$n $m]} "; done
		else
			subnet="${EDGE_IP[$n]}/32"
			ips="none: edge host"
			((n != GATEWAY)) || ips+=", gateway for $LEGACY_LAN"
			((n != LEGACY_VM)) || ips+=" (legacy VM)"
		fi
		read -r dev mac < <(ip -n "$(host_ns "$n")" -j -d link show type vxlan |
			jq -r '.[0] | "\(.ifname) \(.address)"')
		pub="$(host_ip "$n")"
		lease_mac="$(jq -r --arg ip "$pub" '.[] | select(.publicIP == $ip) | .vtepMAC' <<<"$LEASES")"
		if [[ "$lease_mac" != "$mac" ]]; then
			problem "h$n: VTEP MAC in kernel ($mac) differs from its lease (${lease_mac:-no lease for $pub})"
		fi
		printf '  %-4s %-13s %-18s %-11s %-19s %s\n' "h$n" "$pub" "$subnet" "$dev" "$mac" "${ips% }"
	done
}

# ping_pair SRC_NS DST_IP prints "transmitted received".
ping_pair() {
	local out
	out="$(ip netns exec "$1" ping -n -q -c 3 -i 0.2 -W 1 "$2" 2>&1 || true)"
	awk '/packets transmitted/ {print $1, $4; found=1} END {if (!found) print 3, 0}' <<<"$out"
}

# report_ping has every container ping every container on the other hosts
# and prints a loss matrix (rows ping columns; '.' = same host, not pinged).
report_ping() {
	local sn sm dn dm tx rx pairs=0 okpairs=0 ttx=0 trx=0 cell
	echo
	echo "  PING  ping -c 3 -i 0.2 -W 1, loss per pair (row pings column)"
	printf '  %6s' ""
	for ((dn = 1; dn <= HOSTS; dn++)); do
		for ((dm = 1; dm <= CONTAINERS; dm++)); do printf '%7s' "h${dn}c$dm"; done
	done
	echo
	for ((sn = 1; sn <= HOSTS; sn++)); do
		for ((sm = 1; sm <= CONTAINERS; sm++)); do
			printf '  %6s' "h${sn}c$sm"
			for ((dn = 1; dn <= HOSTS; dn++)); do
				for ((dm = 1; dm <= CONTAINERS; dm++)); do
					if ((sn == dn)); then
						printf '%7s' .
						continue
					fi
					read -r tx rx < <(ping_pair "$(container_ns "$sn" "$sm")" "${CIP[$dn $dm]}")
					pairs=$((pairs + 1)) ttx=$((ttx + tx)) trx=$((trx + rx))
					cell="$(((tx - rx) * 100 / tx))%"
					if ((rx == tx)); then okpairs=$((okpairs + 1)); else cell="$cell!"; fi
					printf '%7s' "$cell"
				done
			done
			echo
		done
	done
	local loss=$(((ttx - trx) * 100 / ttx))
	echo "  $okpairs/$pairs pairs without loss, $loss% loss overall ($trx/$ttx packets)"
	((okpairs == pairs)) || problem "ping: $((pairs - okpairs)) of $pairs pairs lost packets"
}

# report_iperf runs one TCP iperf3 test from a container on h2 to one on h1.
report_iperf() {
	local srv cli pid out gbps retr
	srv="$(container_ns 1 1)"
	cli="$(container_ns 2 1)"
	echo
	pid="$(start_in_ns "$srv" "$OVL_STATE/iperf3-server.log" iperf3 -s -1)"
	if ! wait_for 10 "iperf3 server" iperf_listening "$srv"; then
		problem "iperf3 server did not start (log $OVL_STATE/iperf3-server.log)"
		return 0
	fi
	if ! out="$(ip netns exec "$cli" iperf3 -c "${CIP[1 1]}" -t 3 -J 2>&1)"; then
		problem "iperf3 client failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null || echo "$out" | tail -n 1)"
		return 0
	fi
	gbps="$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100' <<<"$out")"
	retr="$(jq -r '.end.sum_sent.retransmits // 0' <<<"$out")"
	echo "  IPERF3  TCP 3s  h2c1 ${CIP[2 1]} -> h1c1 ${CIP[1 1]}:  $gbps Gbit/s  ($retr retransmits)"
	wait_for 5 "iperf3 server exit" bash -c "! kill -0 $pid"
}

iperf_listening() {
	ip netns exec "$1" ss -Hltn 'sport = :5201' | grep -q LISTEN
}

# in_cidr IP CIDR succeeds if the IPv4 address IP lies in CIDR.
in_cidr() {
	local len="${2#*/}" mask
	mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
	(((($(ip4_int "$1") ^ $(ip4_int "${2%/*}")) & mask) == 0))
}

ip4_int() {
	local a b c d
	IFS=. read -r a b c d <<<"$1"
	echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# echo_call NS WANT_IP ARGS... runs `demo-echo call ARGS...` in NS and sets
# CALL_OUT to its output and CALL_ANSWER to the service's answer (or the
# error). It returns 1 if the call failed or the service saw another caller
# than WANT_IP (NAT, or a host address), with the reason in CALL_ERR.
CALL_OUT="" CALL_ANSWER="" CALL_ERR=""
echo_call() {
	local ns="$1" want="$2" seen
	shift 2
	CALL_ERR=""
	if ! CALL_OUT="$(ip netns exec "$ns" "$DEMO_ECHO" call "$@" 2>&1)"; then
		CALL_ANSWER="FAILED: $(tail -n 1 <<<"$CALL_OUT")"
		CALL_ERR="$(tail -n 1 <<<"$CALL_OUT")"
		return 1
	fi
	CALL_ANSWER="$(tail -n 1 <<<"$CALL_OUT")"
	seen="$(sed -n 's/.*; you are \(.*\):[0-9]*$/\1/p' <<<"$CALL_ANSWER")"
	if [[ "$seen" != "$want" ]]; then
		CALL_ERR="the service saw caller ${seen:-?}, want $want (NAT or a host address?)"
		return 1
	fi
}

# report_edge shows the edge hosts at work: the legacy VM finds the service
# in the registry and calls it by its container IP, a container calls the
# legacy VM, and the legacy LAN machine calls the service through the
# gateway. Every callee must see the caller's own address.
report_edge() {
	local vm="$LEGACY_VM" gw="$GATEWAY" lease adv svc="${CIP[1 1]}:$ECHO_PORT" got routes
	lease="$(jq -r --arg h "h$vm" '.[] | select(.hostname == $h) | "\(.kind) \(.subnet)"' <<<"$LEASES")"
	echo
	echo "  EDGE  legacy VM h$vm (no containers) has overlay address ${EDGE_IP[$vm]} (overlayctl leases: kind ${lease%% *})"
	[[ "$lease" == "edge ${EDGE_IP[$vm]}/32" ]] ||
		problem "h$vm: overlayctl leases shows '${lease:-no lease}', want 'edge ${EDGE_IP[$vm]}/32'"
	in_cidr "${EDGE_IP[$vm]}" "$EDGE_CIDR" ||
		problem "h$vm: overlay address ${EDGE_IP[$vm]} is outside the edge range $EDGE_CIDR"
	adv="$(jq -r --arg h "h$gw" '.[] | select(.hostname == $h) | "\(.kind) \(.advertise // [] | join(","))"' <<<"$LEASES")"
	[[ "$adv" == "edge $LEGACY_LAN" ]] ||
		problem "h$gw: overlayctl leases shows '${adv:-no lease}', want an edge lease advertising $LEGACY_LAN"

	# Legacy VM -> service, found in the registry: the service sees the
	# VM's overlay address.
	echo_call "$(host_ns "$vm")" "${EDGE_IP[$vm]}" --registry "$OVL_ETCD" --key "$REGISTRY_KEY" ||
		problem "h$vm -> service: $CALL_ERR"
	got="$(sed -n "s|^looked up $REGISTRY_KEY -> ||p" <<<"$CALL_OUT")"
	echo "    registry $REGISTRY_KEY -> ${got:-?} (registered by the service in h1c1)"
	[[ -z "$got" || "$got" == "$svc" ]] || problem "registry $REGISTRY_KEY holds $got, want h1c1's $svc"
	printf '    %-17s %s\n' "h$vm -> service:" "$CALL_ANSWER"

	# Container -> legacy VM: the VM sees the container's IP.
	echo_call "$(container_ns 2 1)" "${CIP[2 1]}" --addr "${EDGE_IP[$vm]}:$ECHO_PORT" ||
		problem "h2c1 -> h$vm: $CALL_ERR"
	printf '    %-17s %s\n' "h2c1 -> h$vm:" "$CALL_ANSWER"

	# Legacy LAN machine -> service through the gateway, with one static
	# route and nothing of overlay: the service sees its LAN address.
	routes="$(ip -n "$(lan_ns)" route show | grep -v 'proto kernel scope link' | sed 's/ *$//' || true)"
	[[ "$routes" == "$CIDR via $LAN_GW_IP dev eth0" ]] ||
		problem "the legacy LAN machine has other routes than $CIDR via $LAN_GW_IP: $routes"
	echo_call "$(lan_ns)" "$LAN_IP" --addr "$svc" || problem "lan -> service: $CALL_ERR"
	printf '    %-17s %s   (route: %s only)\n' "lan -> service:" "$CALL_ANSWER" "$CIDR via $LAN_GW_IP"
}

# report_masq has a container call the server outside the overlay: it must
# see the container's host (masquerade), while inside the overlay every
# callee saw the caller's own address (report_edge).
report_masq() {
	echo
	echo "  MASQ  ipMasq $(jq -r .ipMasq "$(host_file 2)") on h2 (host file); a container calls a server outside the overlay:"
	echo_call "$(container_ns 2 1)" "$(host_ip 2)" --addr "$OUTSIDE_ADDR" ||
		problem "h2c1 -> outside: $CALL_ERR"
	printf '    %-17s %s   (h2 is %s)\n' "h2c1 -> outside:" "$CALL_ANSWER" "$(host_ip 2)"
}

# host_ctl N ARGS... runs overlayctl on host N, as its operator would:
# in its namespace, with its run dir.
host_ctl() {
	local n="$1"
	shift
	ip netns exec "$(host_ns "$n")" "$OVL_BIN/overlayctl" --etcd-endpoints "$OVL_ETCD" \
		--network "$OVL_NETWORK" --run-dir "$(host_dir "$n")/run" "$@"
}

# report_diagnosis shows what an operator sees: overlayctl status on h1,
# and overlayctl why from h1 to a container on h2 (which must say the
# path is complete).
report_diagnosis() {
	echo
	echo "  DIAG  overlayctl status on h1:"
	host_ctl 1 status 2>&1 | sed 's/^/    /' || problem "overlayctl status on h1 failed"
	echo
	echo "  DIAG  overlayctl why ${CIP[2 1]} on h1 (h2c1, a container on h2):"
	local code=0
	host_ctl 1 why "${CIP[2 1]}" >"$OVL_STATE/why.out" 2>&1 || code=$?
	sed 's/^/    /' "$OVL_STATE/why.out"
	((code == 0)) || problem "overlayctl why ${CIP[2 1]} on h1 exited $code: $(tail -n 1 "$OVL_STATE/why.out")"
}

# --- main ----------------------------------------------------------------------

bring_up
report_hosts
report_ping
report_iperf
report_edge
report_masq
report_diagnosis

echo
if ((${#PROBLEMS[@]} > 0)); then
	printf '  problem: %s\n' "${PROBLEMS[@]}"
	echo "RESULT: FAIL"
	exit 1
fi
echo "RESULT: PASS"
