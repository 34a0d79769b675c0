#!/usr/bin/env bash
# bench-machines.sh measures overlay between real machines: on each host
# (reached over ssh, where overlayd is running) it attaches a test container
# through the overlay CNI plugin, then runs iperf3 and ping container ->
# container across hosts (the overlay) and host -> host on the addresses
# overlayd uses as underlay, interleaved, and prints a Markdown table
# (optionally JSON). It removes everything it made, also on failure and ^C.
#
#   hack/bench-machines.sh HOST1 HOST2 [HOST...]
#
# HOST is an ssh destination ([user@]name), optionally followed by
# comma-separated settings for that host alone:
#
#   node1,underlay=10.0.0.11,run-dir=/run/overlay,ipam-dir=/var/lib/cni/overlay,cni-bin=/opt/cni/bin
#
# Pairs are consecutive: HOST1 -> HOST2, HOST2 -> HOST3, ...; the first of
# a pair runs the iperf3 and ping clients, the second the servers.
#
# Each host needs: root (or BENCH_SUDO), overlayd running and ready for the
# network, the overlay CNI plugin in the CNI bin dir, iproute2 (ip, ss,
# bridge), ping and iperf3 (apt-get install iperf3). The machine running the
# script needs bash, jq and ssh. The iperf3 port (BENCH_PORT) must be open
# from host to host (the container -> container traffic is inside VXLAN).
#
# Environment (defaults in brackets):
#   BENCH_SSH            ssh command [ssh -o BatchMode=yes -o ConnectTimeout=10]
#   BENCH_SUDO           prefix of every remote command, e.g. "sudo -n" []
#   BENCH_RUN            run "hosts" with this local command instead of ssh:
#                        its words, with {} replaced by HOST (or HOST appended
#                        if there is no {}), then the command. The tests use
#                        BENCH_RUN='nsenter --net=/var/run/netns/{} --' with
#                        network namespaces as hosts. (`ip netns exec` does
#                        not work here: its private mount namespace keeps the
#                        test container's netns from outliving the call.)
#   BENCH_NETWORK        overlay network [default]
#   BENCH_RUN_DIR        overlayd's --run-dir [/run/overlay]
#   BENCH_IPAM_DIR       overlay-ipam's dataDir: must be the one your CNI
#                        conflist uses, so no address is handed out twice
#                        [/var/lib/cni/overlay]
#   BENCH_CNI_BIN        CNI bin dir [/opt/cni/bin]
#   BENCH_TMP            where a scratch dir is made on each host [/tmp]
#   BENCH_PORT           iperf3 port [5201]
#   BENCH_TIME           seconds per iperf3 run [10]
#   BENCH_RUNS           iperf3 runs per cell [3]
#   BENCH_PINGS          pings per path [200]
#   BENCH_PING_INTERVAL  seconds between pings [0.05]
#   BENCH_JSON           also write JSON: a FILE.json, or a directory
#                        (bench-machines-DATE.json in it) []
#   BENCH_ID             names everything it makes [ovlbench-DATE-PID]
set -euo pipefail

PROG=bench-machines

BENCH_SSH=${BENCH_SSH:-ssh -o BatchMode=yes -o ConnectTimeout=10}
BENCH_SUDO=${BENCH_SUDO:-}
BENCH_RUN=${BENCH_RUN:-}
BENCH_NETWORK=${BENCH_NETWORK:-default}
BENCH_RUN_DIR=${BENCH_RUN_DIR:-/run/overlay}
BENCH_IPAM_DIR=${BENCH_IPAM_DIR:-/var/lib/cni/overlay}
BENCH_CNI_BIN=${BENCH_CNI_BIN:-/opt/cni/bin}
BENCH_TMP=${BENCH_TMP:-/tmp}
BENCH_PORT=${BENCH_PORT:-5201}
BENCH_TIME=${BENCH_TIME:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_PINGS=${BENCH_PINGS:-200}
BENCH_PING_INTERVAL=${BENCH_PING_INTERVAL:-0.05}
BENCH_JSON=${BENCH_JSON:-}
BENCH_ID=${BENCH_ID:-ovlbench-$(date +%Y%m%d%H%M%S)-$$}

log() { echo "$PROG: $*" >&2; }
die() {
	log "$*"
	exit 1
}
# sq quotes $1 for a POSIX shell.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

# --- arguments ---------------------------------------------------------------

(($# >= 2)) || usage
[[ $BENCH_ID =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "BENCH_ID $BENCH_ID: use letters, digits, _ . - only"
[[ $BENCH_NETWORK =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "BENCH_NETWORK $BENCH_NETWORK is not a network name"
for v in BENCH_PORT BENCH_TIME BENCH_RUNS BENCH_PINGS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive integer"
done
[[ $BENCH_PING_INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_PING_INTERVAL=$BENCH_PING_INTERVAL: want seconds"
command -v jq >/dev/null || die "jq is missing on this machine (apt-get install jq)"
if [[ -z $BENCH_RUN ]]; then
	read -r -a ssh_argv <<<"$BENCH_SSH"
	command -v "${ssh_argv[0]}" >/dev/null || die "${ssh_argv[0]} is missing on this machine (BENCH_SSH=$BENCH_SSH)"
fi

# Per host N (1-based): DEST ssh destination, UNDERLAY_GIVEN, RUNDIR,
# IPAMDIR, CNIBIN; then what preflight learns.
declare -a DEST UNDERLAY_GIVEN RUNDIR IPAMDIR CNIBIN
declare -a HOSTNAME_ KERNEL CPU CORES OS SUBNET DEV MAC LOCAL FDB
declare -a DIR CTNS CTIP
NHOSTS=0
for arg in "$@"; do
	NHOSTS=$((NHOSTS + 1))
	IFS=, read -r -a parts <<<"$arg"
	DEST[NHOSTS]=${parts[0]}
	[[ -n ${DEST[NHOSTS]} && ${DEST[NHOSTS]} != -* ]] || die "host $NHOSTS: bad destination '$arg'"
	UNDERLAY_GIVEN[NHOSTS]=""
	RUNDIR[NHOSTS]=$BENCH_RUN_DIR
	IPAMDIR[NHOSTS]=$BENCH_IPAM_DIR
	CNIBIN[NHOSTS]=$BENCH_CNI_BIN
	for kv in "${parts[@]:1}"; do
		case $kv in
		underlay=*) UNDERLAY_GIVEN[NHOSTS]=${kv#*=} ;;
		run-dir=*) RUNDIR[NHOSTS]=${kv#*=} ;;
		ipam-dir=*) IPAMDIR[NHOSTS]=${kv#*=} ;;
		cni-bin=*) CNIBIN[NHOSTS]=${kv#*=} ;;
		*) die "${DEST[NHOSTS]}: unknown setting '$kv' (want underlay=, run-dir=, ipam-dir=, cni-bin=)" ;;
		esac
	done
	u=${UNDERLAY_GIVEN[NHOSTS]}
	[[ -z $u || $u =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "${DEST[NHOSTS]}: underlay=$u is not an IPv4 address"
	for d in "${RUNDIR[NHOSTS]}" "${IPAMDIR[NHOSTS]}" "${CNIBIN[NHOSTS]}"; do
		[[ $d == /* ]] || die "${DEST[NHOSTS]}: $d must be an absolute path"
	done
	DIR[NHOSTS]="$BENCH_TMP/$BENCH_ID-$NHOSTS"
	CTNS[NHOSTS]="$BENCH_ID-c$NHOSTS"
done

# --- running commands on a host ----------------------------------------------

# on N SCRIPT runs SCRIPT with sh on host N, as root through BENCH_SUDO.
# stdin is closed, so a remote command never eats the script's input.
on() {
	local host=${DEST[$1]} script=$2
	local -a sudo=()
	read -r -a sudo <<<"$BENCH_SUDO"
	if [[ -n $BENCH_RUN ]]; then
		local -a argv
		local i replaced=0
		read -r -a argv <<<"$BENCH_RUN"
		for i in "${!argv[@]}"; do
			if [[ ${argv[i]} == *'{}'* ]]; then
				argv[i]=${argv[i]//'{}'/$host}
				replaced=1
			fi
		done
		((replaced)) || argv+=("$host")
		"${argv[@]}" "${sudo[@]}" sh -c "$script" </dev/null
	else
		# ssh hands the remote login shell one string: quote the script.
		"${ssh_argv[@]}" "$host" "${sudo[*]} sh -c $(sq "$script")" </dev/null
	fi
}

# cni_script N VERB prints the shell that executes the overlay plugin on
# host N for its test container, the network config on stdin, as a runtime
# would (CNI spec: environment variables plus the config).
cni_script() {
	local n=$1 verb=$2 bin=${CNIBIN[$1]}
	printf 'printf %%s %s | CNI_COMMAND=%s CNI_CONTAINERID=%s CNI_NETNS=%s CNI_IFNAME=eth0 CNI_PATH=%s %s' \
		"$(sq "$(net_conf "$n")")" "$verb" "$(sq "${CTNS[n]}")" "$(sq "/var/run/netns/${CTNS[n]}")" "$(sq "$bin")" "$(sq "$bin/overlay")"
}

# net_conf N prints the network config for host N: the plugin alone, as
# conf/10-overlay.conflist configures it, in the version that has STATUS.
net_conf() {
	jq -nc --arg net "$BENCH_NETWORK" --arg run "${RUNDIR[$1]}" --arg ipam "${IPAMDIR[$1]}" \
		'{cniVersion:"1.1.0", name:"overlay-bench", type:"overlay", network:$net, runDir:$run,
		  ipam:{type:"overlay-ipam", dataDir:$ipam}}'
}

# --- what it made, removed on exit -------------------------------------------

# CLEANUP lists what this run made, "KIND<TAB>N<TAB>ARG", in order. An
# entry is added before the thing is made (a ^C can land while the remote
# command runs), under a name only this run uses; removing a thing that was
# never made is a no-op.
CLEANUP=()
record() { CLEANUP+=("$1"$'\t'"$2"$'\t'"$3"); }
unrecord_last() { unset 'CLEANUP[${#CLEANUP[@]}-1]'; }

# undo KIND N ARG removes one recorded thing.
undo() {
	local kind=$1 n=$2 arg=$3
	case $kind in
	iperf3)
		# Every iperf3 whose command line names our pidfile: found by
		# that rather than by the file, which a ^C may have beaten.
		# shellcheck disable=SC2016 # expanded by the remote shell
		on "$n" "pf=$(sq "$arg")"'
			pids=""
			for d in /proc/[0-9]*; do
				cmd=$(tr "\0" " " <"$d/cmdline" 2>/dev/null) || continue
				case "$cmd" in iperf3\ *|*/iperf3\ *) ;; *) continue ;; esac
				case "$cmd" in *" --pidfile $pf "*) pids="$pids ${d#/proc/}" ;; esac
			done
			[ -n "$pids" ] || exit 0
			kill $pids 2>/dev/null
			for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
				kill -0 $pids 2>/dev/null || exit 0
				sleep 0.1
			done
			kill -9 $pids 2>/dev/null; exit 0'
		;;
	cni) on "$n" "$(cni_script "$n" DEL) >/dev/null" ;;
	netns) on "$n" "if [ -e $(sq "/var/run/netns/$arg") ]; then ip netns del $(sq "$arg"); fi" ;;
	dir) on "$n" "rm -rf $(sq "$arg")" ;;
	esac
}

cleanup() {
	local rc=$? k kind n arg out failed=0
	# A second ^C must not cut the cleanup short; the commands below
	# inherit the ignored signal too.
	trap '' INT TERM HUP
	set +e
	((${#CLEANUP[@]} == 0)) || log "removing what this run made (${#CLEANUP[@]} items)"
	for ((k = ${#CLEANUP[@]} - 1; k >= 0; k--)); do
		IFS=$'\t' read -r kind n arg <<<"${CLEANUP[k]}"
		if ! out=$(undo "$kind" "$n" "$arg" 2>&1); then
			log "${DEST[n]}: could not remove $kind ${arg:-${CTNS[n]}}: $out"
			failed=1
		fi
	done
	if ((failed)); then
		log "some of what this run made is left (named $BENCH_ID*): see above"
		((rc != 0)) || rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- preflight: every host, before anything is made ---------------------------

# preflight N checks host N and learns its machine and overlay facts. It
# prints every problem and returns 1 if there is one.
preflight() {
	local n=$1 host=${DEST[$1]} out rc=0 bad=()
	# shellcheck disable=SC2016 # expanded by the remote shell
	out=$(on "$n" "rundir=$(sq "${RUNDIR[n]}"); net=$(sq "$BENCH_NETWORK"); bin=$(sq "${CNIBIN[n]}"); port=$BENCH_PORT; conf=$(sq "$(net_conf "$n")")"'
		echo "uid $(id -u)"
		for c in ip ss bridge ping iperf3; do command -v "$c" >/dev/null 2>&1 || echo "missing $c"; done
		[ -x "$bin/overlay" ] && echo plugin
		echo "hostname $(cat /proc/sys/kernel/hostname)"
		echo "kernel $(uname -r)"
		echo "cores $(getconf _NPROCESSORS_ONLN)"
		cpu=$(sed -n "s/^model name[[:space:]]*:[[:space:]]*//p" /proc/cpuinfo | head -n 1)
		[ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | sed -n "s/^Model name:[[:space:]]*//p" | head -n 1)
		echo "cpu ${cpu:-unknown}"
		echo "os $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")"
		hf="$rundir/$net.json"
		[ -r "$hf" ] && echo "hostfile $(tr -d "\n" <"$hf")"
		if [ -x "$bin/overlay" ]; then
			st=$(printf "%s" "$conf" | CNI_COMMAND=STATUS CNI_PATH="$bin" "$bin/overlay" 2>&1)
			echo "status $? $(printf "%s" "$st" | tr "\n" " ")"
		fi
		vni=$(sed -n "s/.*\"vni\":\([0-9]*\).*/\1/p" "$hf" 2>/dev/null)
		if [ -n "$vni" ]; then
			dev=overlay.$vni
			[ ${#dev} -le 15 ] || dev=ovl.$vni
			echo "dev $dev"
			echo "vxlan $(ip -d -j link show dev "$dev" 2>/dev/null | tr -d "\n")"
			echo "fdb $(bridge -j fdb show dev "$dev" 2>/dev/null | tr -d "\n")"
		fi
		command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$port")" ] && echo portbusy
		exit 0' 2>&1) || rc=$?
	if ((rc != 0)); then
		local via="BENCH_SSH=$BENCH_SSH"
		[[ -z $BENCH_RUN ]] || via="BENCH_RUN=$BENCH_RUN"
		log "$host: cannot run commands there (exit $rc, $via): $out"
		return 1
	fi
	field() { sed -n "s/^$1 //p" <<<"$out" | head -n 1; }
	local missing
	missing=$(sed -n 's/^missing //p' <<<"$out" | tr '\n' ' ')
	[[ $(field uid) == 0 ]] || bad+=("commands run as uid $(field uid), not root: log in as root or set BENCH_SUDO='sudo -n'")
	[[ $missing != *iperf3* ]] || bad+=("iperf3 is not installed: apt-get install iperf3 (or your distribution's iperf3 package)")
	missing=${missing/iperf3 /}
	[[ -z $missing ]] || bad+=("missing commands: ${missing% } (apt-get install iproute2 iputils-ping)")
	grep -qx plugin <<<"$out" || bad+=("no executable ${CNIBIN[n]}/overlay: install the CNI plugins there (install -m 0755 bin/overlay bin/overlay-ipam ${CNIBIN[n]}/) or set BENCH_CNI_BIN / cni-bin=")
	local hf status
	hf=$(field hostfile)
	status=$(field status)
	if [[ -z $hf ]]; then
		bad+=("overlayd is not ready: no host file ${RUNDIR[n]}/$BENCH_NETWORK.json, so overlayd is not running or has not joined network $BENCH_NETWORK (systemctl status overlayd; if it runs with another --run-dir, set BENCH_RUN_DIR or run-dir=)")
	elif [[ $(jq -r '.kind // ""' <<<"$hf" 2>/dev/null) == edge ]]; then
		bad+=("it is an edge host of network $BENCH_NETWORK (overlayd --mode edge): it has no container subnet")
	elif [[ -n $status && $status != "0 "* ]]; then
		# A CNI error on stdout: {"code":50,"msg":...,"details":...}.
		local code msg
		code=$(jq -r '.code // empty' <<<"${status#* }" 2>/dev/null) || true
		msg=$(jq -r '"\(.msg)\(if .details then ": " + .details else "" end)"' <<<"${status#* }" 2>/dev/null) ||
			msg="${status#* } (check systemctl status overlayd and its log)"
		bad+=("overlayd is not ready for network $BENCH_NETWORK (the plugin's STATUS answers code ${code:-?}): $msg")
	fi
	if [[ -n $hf ]]; then
		SUBNET[n]=$(jq -r .subnet <<<"$hf")
		DEV[n]=$(field dev)
		MAC[n]=$(jq -r '.[0].address // empty' <<<"$(field vxlan)" 2>/dev/null) || true
		LOCAL[n]=$(jq -r '.[0].linkinfo.info_data.local // empty' <<<"$(field vxlan)" 2>/dev/null) || true
		FDB[n]=$(field fdb)
		[[ -n ${MAC[n]} ]] || bad+=("overlayd's VXLAN device ${DEV[n]} is missing")
	fi
	! grep -qx portbusy <<<"$out" || bad+=("TCP port $BENCH_PORT is in use: set BENCH_PORT to a free port")
	HOSTNAME_[n]=$(field hostname)
	KERNEL[n]=$(field kernel)
	CPU[n]=$(field cpu)
	CORES[n]=$(field cores)
	OS[n]=$(field os)
	local b
	for b in "${bad[@]}"; do log "$host: $b"; done
	((${#bad[@]} == 0))
}

problems=0
for ((n = 1; n <= NHOSTS; n++)); do
	preflight "$n" || problems=1
done
((problems == 0)) || die "not starting: fix the hosts above"

# --- test containers ----------------------------------------------------------

# make_unique KIND N ARG SCRIPT records ARG, then runs SCRIPT, which must
# exit 3 without touching anything if ARG exists already (it is then not
# ours, and is left alone).
make_unique() {
	local kind=$1 n=$2 arg=$3 script=$4 out rc=0
	record "$kind" "$n" "$arg"
	out=$(on "$n" "$script" 2>&1) || rc=$?
	if ((rc == 3)); then
		unrecord_last
		die "${DEST[n]}: $arg exists already; set another BENCH_ID"
	fi
	((rc == 0)) || die "${DEST[n]}: creating $kind $arg failed: $out"
}

for ((n = 1; n <= NHOSTS; n++)); do
	make_unique dir "$n" "${DIR[n]}" "[ ! -e $(sq "${DIR[n]}") ] || exit 3; mkdir -m 700 $(sq "${DIR[n]}")"
	make_unique netns "$n" "${CTNS[n]}" \
		"[ ! -e $(sq "/var/run/netns/${CTNS[n]}") ] || exit 3; ip netns add $(sq "${CTNS[n]}") && ip -n $(sq "${CTNS[n]}") link set lo up"
	record cni "$n" ""
	rc=0
	# stdout is the result (or the CNI error); the plugin's stderr and
	# ssh's pass through.
	res=$(on "$n" "$(cni_script "$n" ADD)") || rc=$?
	((rc == 0)) || die "${DEST[n]}: CNI ADD of the test container failed (exit $rc): $res"
	CTIP[n]=$(jq -r '.ips[0].address // empty' <<<"$res" 2>/dev/null) || true
	CTIP[n]=${CTIP[n]%/*}
	[[ -n ${CTIP[n]} ]] || die "${DEST[n]}: CNI ADD returned no address: $res"
	log "${DEST[n]}: test container ${CTNS[n]} attached, ${CTIP[n]}"
done

# --- measuring -----------------------------------------------------------------

# start_server N WHERE starts an iperf3 server on host N, in its test
# container (WHERE=container) or its host namespace (WHERE=host), and waits
# until it listens.
start_server() {
	local n=$1 where=$2 pf="${DIR[$1]}/iperf3-$2.pid" exec="" out
	[[ $where == host ]] || exec="ip netns exec $(sq "${CTNS[n]}") "
	record iperf3 "$n" "$pf"
	out=$(on "$n" "${exec}iperf3 -s -D -p $BENCH_PORT --pidfile $(sq "$pf") --logfile $(sq "${DIR[n]}/iperf3-$where.log") || exit 1
		for i in \$(seq 50); do
			[ -n \"\$(${exec}ss -Hltn 'sport = :$BENCH_PORT')\" ] && exit 0
			sleep 0.1
		done
		cat $(sq "${DIR[n]}/iperf3-$where.log"); exit 1" 2>&1) ||
		die "${DEST[n]}: iperf3 server in the $where did not start listening on port $BENCH_PORT: $out"
}

# client_prefix N WHERE prints how to run a command on host N's WHERE.
client_prefix() { [[ $2 == host ]] || printf 'ip netns exec %s ' "$(sq "${CTNS[$1]}")"; }

# reach A WHERE IP checks that WHERE on host A reaches IP.
reach() {
	local a=$1 where=$2 ip=$3
	on "$a" "$(client_prefix "$a" "$where")ping -n -q -c 1 -i 0.2 -w 3 $ip >/dev/null 2>&1"
}

# iperf A WHERE IP STREAMS prints the Gbit/s host A's WHERE gets to IP.
iperf() {
	local a=$1 where=$2 ip=$3 streams=$4 out rc=0 bps try
	for try in 1 2; do
		rc=0
		out=$(on "$a" "$(client_prefix "$a" "$where")iperf3 -c $ip -p $BENCH_PORT -t $BENCH_TIME -P $streams -J") || rc=$?
		# The server may still be closing the previous test.
		[[ $try == 1 && $out == *'server is busy'* ]] || break
		sleep 1
	done
	bps=$(jq -r '.end.sum_received.bits_per_second // empty' <<<"$out" 2>/dev/null) || true
	if ((rc != 0)) || [[ -z $bps ]]; then
		die "${DEST[a]}: iperf3 from the $where to $ip failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null || true) $(tail -n 3 <<<"$out")"
	fi
	awk -v b="$bps" 'BEGIN { printf "%.3f", b / 1e9 }'
}

# pings A WHERE IP prints the round-trip times (ms, one a line) of
# BENCH_PINGS pings from host A's WHERE to IP.
pings() {
	local a=$1 where=$2 ip=$3 out times
	out=$(on "$a" "$(client_prefix "$a" "$where")ping -n -c $BENCH_PINGS -i $BENCH_PING_INTERVAL -W 1 $ip" 2>&1) || true
	times=$(grep -o 'time=[0-9.]*' <<<"$out" | cut -d= -f2) || true
	[[ -n $times ]] || die "${DEST[a]}: no ping from the $where to $ip came back: $(tail -n 2 <<<"$out")"
	echo "$times"
}

# stats prints "median min max" of the numbers on stdin.
stats() { sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f", m, v[1], v[NR] }'; }
# pct P prints the P-th percentile (nearest rank) of the numbers on stdin.
pct() { sort -g | awk -v p="$1" '{ v[NR] = $1 } END { r = int(p / 100 * NR); if (r < p / 100 * NR) r++; if (r < 1) r = 1; printf "%.3f", v[r] }'; }

declare -A TPUT PING
declare -a PAIR_UNDERLAY PAIR_SOURCE
for ((a = 1; a < NHOSTS; a++)); do
	b=$((a + 1))
	# The address host a's overlayd sends host b's VXLAN packets to: its
	# FDB entry for b's VTEP MAC (the lease's public IP), else the address
	# b's VXLAN device sends from.
	u=${UNDERLAY_GIVEN[b]} src="given"
	if [[ -z $u && -n ${FDB[a]} ]]; then
		u=$(jq -r --arg mac "${MAC[b]}" '[.[] | select(.mac == $mac and .dst != null) | .dst][0] // empty' <<<"${FDB[a]}" 2>/dev/null) || true
		src="${DEST[a]}'s FDB entry for ${DEST[b]}'s VTEP"
	fi
	if [[ -z $u ]]; then
		u=${LOCAL[b]} src="${DEST[b]}'s VXLAN device"
	fi
	[[ -n $u ]] || die "${DEST[b]}: cannot tell its underlay address: pass it as ${DEST[b]},underlay=ADDR"
	PAIR_UNDERLAY[a]=$u PAIR_SOURCE[a]=$src

	start_server "$b" container
	start_server "$b" host
	reach "$a" container "${CTIP[b]}" ||
		die "${DEST[a]}: its test container does not reach ${DEST[b]}'s (${CTIP[b]}) through the overlay: check overlayctl status on both"
	reach "$a" host "$u" ||
		die "${DEST[a]}: does not reach ${DEST[b]}'s underlay address $u (from $src): pass the right one as ${DEST[b]},underlay=ADDR"

	log "${DEST[a]} -> ${DEST[b]}: measuring (iperf3 ${BENCH_RUNS} x ${BENCH_TIME} s x 2 stream counts x 2 paths, then ${BENCH_PINGS} pings each)"
	# Interleaved (overlay, underlay, overlay, ...) so the machines'
	# noise hits both paths alike.
	for ((r = 1; r <= BENCH_RUNS; r++)); do
		for s in 1 4; do
			TPUT[$a,overlay,$s]+="$(iperf "$a" container "${CTIP[b]}" "$s") "
			TPUT[$a,underlay,$s]+="$(iperf "$a" host "$u" "$s") "
		done
	done
	PING[$a,overlay]=$(pings "$a" container "${CTIP[b]}")
	PING[$a,underlay]=$(pings "$a" host "$u")
done

# --- report ----------------------------------------------------------------------

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cell() { # cell A PATH STREAMS: "median Gbit/s (min–max)"
	local m lo hi
	read -r m lo hi < <(tr ' ' '\n' <<<"${TPUT[$1,$2,$3]}" | grep . | stats)
	if ((BENCH_RUNS > 1)); then printf '%.2f Gbit/s (%.2f–%.2f)' "$m" "$lo" "$hi"; else printf '%.2f Gbit/s' "$m"; fi
}
median() { tr ' ' '\n' <<<"${TPUT[$1,$2,$3]}" | grep . | stats | cut -d' ' -f1; }
# (The parentheses matter: awk reads "printf ..., y > 0" as a redirection.)
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f×", (y > 0 ? x / y : 0) }'; }

echo "## overlay across machines, $DATE"
echo
echo "iperf3 TCP, $BENCH_RUNS run(s) × $BENCH_TIME s per cell (median, min–max), the two paths interleaved; ping: $BENCH_PINGS × $BENCH_PING_INTERVAL s. Network $BENCH_NETWORK."
echo
echo "| host | hostname | CPU | cores | kernel | OS | underlay | subnet | test container |"
echo "|---|---|---|---|---|---|---|---|---|"
for ((n = 1; n <= NHOSTS; n++)); do
	echo "| ${DEST[n]} | ${HOSTNAME_[n]} | ${CPU[n]} | ${CORES[n]} | ${KERNEL[n]} | ${OS[n]} | ${LOCAL[n]:-?} | ${SUBNET[n]} | ${CTIP[n]} |"
done
echo
echo "| client → server | path | TCP 1 stream | TCP 4 streams | ping p50 | ping p99 |"
echo "|---|---|---|---|---|---|"
for ((a = 1; a < NHOSTS; a++)); do
	b=$((a + 1))
	for p in overlay underlay; do
		if [[ $p == overlay ]]; then what="container → container (overlay, ${CTIP[b]})"; else what="host → host (underlay, ${PAIR_UNDERLAY[a]})"; fi
		echo "| ${DEST[a]} → ${DEST[b]} | $what | $(cell "$a" "$p" 1) | $(cell "$a" "$p" 4) | $(pct 50 <<<"${PING[$a,$p]}") ms | $(pct 99 <<<"${PING[$a,$p]}") ms |"
	done
	echo "| ${DEST[a]} → ${DEST[b]} | overlay ÷ underlay | $(ratio "$(median "$a" overlay 1)" "$(median "$a" underlay 1)") | $(ratio "$(median "$a" overlay 4)" "$(median "$a" underlay 4)") | $(ratio "$(pct 50 <<<"${PING[$a,overlay]}")" "$(pct 50 <<<"${PING[$a,underlay]}")") | $(ratio "$(pct 99 <<<"${PING[$a,overlay]}")" "$(pct 99 <<<"${PING[$a,underlay]}")") |"
done

if [[ -n $BENCH_JSON ]]; then
	hosts=()
	for ((n = 1; n <= NHOSTS; n++)); do
		hosts+=("$(jq -nc --arg host "${DEST[n]}" --arg hostname "${HOSTNAME_[n]}" --arg cpu "${CPU[n]}" --arg cores "${CORES[n]}" \
			--arg kernel "${KERNEL[n]}" --arg os "${OS[n]}" --arg underlay "${LOCAL[n]}" --arg subnet "${SUBNET[n]}" --arg ct "${CTIP[n]}" \
			'{host:$host, hostname:$hostname, cpu:$cpu, cores:($cores|tonumber? // 0), kernel:$kernel, os:$os,
			  underlay:$underlay, subnet:$subnet, container:$ct}')")
	done
	pairs=()
	for ((a = 1; a < NHOSTS; a++)); do
		b=$((a + 1))
		paths=()
		for p in overlay underlay; do
			paths+=("$(jq -nc --arg path "$p" --arg t1 "${TPUT[$a,$p,1]}" --arg t4 "${TPUT[$a,$p,4]}" \
				--arg p50 "$(pct 50 <<<"${PING[$a,$p]}")" --arg p99 "$(pct 99 <<<"${PING[$a,$p]}")" --arg np "$(grep -c . <<<"${PING[$a,$p]}")" \
				'def runs: [splits(" ") | select(. != "") | tonumber];
				 def cell: runs as $r | {runs_gbps: $r, median_gbps: ($r | sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end)};
				 {path: $path, tcp_1_stream: ($t1 | cell), tcp_4_streams: ($t4 | cell),
				  ping_ms: {p50: ($p50 | tonumber), p99: ($p99 | tonumber), replies: ($np | tonumber)}}')")
		done
		pairs+=("$(jq -nc --arg c "${DEST[a]}" --arg s "${DEST[b]}" --arg u "${PAIR_UNDERLAY[a]}" --arg src "${PAIR_SOURCE[a]}" \
			--arg ct "${CTIP[b]}" --argjson paths "$(printf '%s\n' "${paths[@]}" | jq -sc .)" \
			'{client:$c, server:$s, server_container:$ct, server_underlay:$u, underlay_from:$src, paths:$paths}')")
	done
	json_path=$BENCH_JSON
	if [[ $json_path != *.json ]]; then
		mkdir -p "$json_path"
		json_path="$json_path/bench-machines-$(date -u +%Y%m%dT%H%M%SZ).json"
	fi
	jq -n --arg date "$DATE" --arg net "$BENCH_NETWORK" \
		--argjson settings "{\"iperf3_seconds\":$BENCH_TIME,\"runs\":$BENCH_RUNS,\"pings\":$BENCH_PINGS,\"ping_interval_s\":$BENCH_PING_INTERVAL,\"port\":$BENCH_PORT}" \
		--argjson hosts "$(printf '%s\n' "${hosts[@]}" | jq -sc .)" --argjson pairs "$(printf '%s\n' "${pairs[@]}" | jq -sc .)" \
		'{date:$date, network:$net, settings:$settings, hosts:$hosts, pairs:$pairs}' >"$json_path"
	log "JSON in $json_path"
fi
