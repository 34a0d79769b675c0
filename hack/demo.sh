#!/usr/bin/env bash
# demo.sh shows overlay working end to end on one machine: 3 simulated hosts
# (network namespaces on a shared fabric), a real etcd, a real overlayd per
# host, 2 containers per host attached through the real CNI plugins, then a
# cross-host ping matrix and an iperf3 run. Binaries come from bin/ (run it
# through `make demo`, which builds them).
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
KEEP="${KEEP:-0}"
READY_TIMEOUT=60

declare -A CIP       # "N M" -> container IP
PROBLEMS=()

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
	for ((n = 1; n <= HOSTS; n++)); do
		f="$keep/h$n/overlayd.log"
		[[ -f "$f" ]] || continue
		echo "--- tail of h$n overlayd log ($f)"
		tail -n 15 "$f"
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
	cluster_init
	echo "overlay demo: $HOSTS hosts x $CONTAINERS containers, network $OVL_NETWORK $CIDR"
	echo "  (namespaces $OVL_PREFIX-*, state $OVL_STATE)"

	step "fabric + devetcd ($OVL_ETCD)"
	cluster_fabric_up
	cluster_etcd_up || die "devetcd did not start; log $OVL_STATE/devetcd.log"
	done_ok

	step "hosts h1..h$HOSTS on 198.18.0.0/24"
	for ((n = 1; n <= HOSTS; n++)); do cluster_host_add "$n"; done
	done_ok

	step "overlayctl network set $OVL_NETWORK --cidr $CIDR"
	cluster_ctl network set "$OVL_NETWORK" --cidr "$CIDR" >"$OVL_STATE/overlayctl.log" 2>&1 ||
		die "$(tail -n 3 "$OVL_STATE/overlayctl.log")"
	done_ok

	step "overlayd on $HOSTS hosts, host files written"
	t0=$(date +%s.%N)
	for ((n = 1; n <= HOSTS; n++)); do cluster_overlayd_start "$n"; done
	for ((n = 1; n <= HOSTS; n++)); do
		cluster_wait_host "$n" "$READY_TIMEOUT" 2>"$OVL_STATE/wait.err" || die "$(cat "$OVL_STATE/wait.err")"
	done
	done_ok "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}')"

	step "$((HOSTS * CONTAINERS)) containers attached (cnitool add)"
	for ((n = 1; n <= HOSTS; n++)); do
		for ((m = 1; m <= CONTAINERS; m++)); do
			ip="$(cluster_attach "$n" "$m" 2>"$OVL_STATE/attach.err")" ||
				die "h${n}c$m: $(cat "$OVL_STATE/attach.err")"
			CIP[$n $m]="$ip"
		done
	done
	done_ok
}

# report_hosts prints each host's lease, VTEP and containers. The VTEP is
# read from the kernel (the device overlayd made) and checked against what
# the host published in its etcd lease.
report_hosts() {
	local leases n subnet dev mac lease_mac pub ips m
	leases="$(cluster_ctl leases --network "$OVL_NETWORK" -o json 2>"$OVL_STATE/leases.err")" || {
		problem "overlayctl leases failed: $(head -n 2 "$OVL_STATE/leases.err")"
		leases='[]'
	}
	echo
	printf '  %-4s %-13s %-16s %-11s %-19s %s\n' HOST UNDERLAY SUBNET VTEP "VTEP MAC" CONTAINERS
	for ((n = 1; n <= HOSTS; n++)); do
		subnet="$(jq -r .subnet "$(host_file "$n")")"
		read -r dev mac < <(ip -n "$(host_ns "$n")" -j -d link show type vxlan |
			jq -r '.[0] | "\(.ifname) \(.address)"')
		pub="$(host_ip "$n")"
		lease_mac="$(jq -r --arg ip "$pub" '.[] | select(.publicIP == $ip) | .vtepMAC' <<<"$leases")"
		if [[ "$lease_mac" != "$mac" ]]; then
			problem "h$n: VTEP MAC in kernel ($mac) differs from its lease (${lease_mac:-no lease for $pub})"
		fi
		ips=""
		for ((m = 1; m <= CONTAINERS; m++)); do ips+="c$m=${CIP[$n $m]} "; done
		printf '  %-4s %-13s %-16s %-11s %-19s %s\n' "h$n" "$pub" "$subnet" "$dev" "$mac" "${ips% }"
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

# --- main ----------------------------------------------------------------------

bring_up
report_hosts
report_ping
report_iperf

echo
if ((${#PROBLEMS[@]} > 0)); then
	printf '  problem: %s\n' "${PROBLEMS[@]}"
	echo "RESULT: FAIL"
	exit 1
fi
echo "RESULT: PASS"
