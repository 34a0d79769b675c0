#!/usr/bin/env bash
# containerd-check.sh validates the CNI plugins against a real runtime:
# containerd 1.6 (Debian 12) driven by `ctr run --cni`, step by step, as a
# person would (KEEP=1 leaves the cluster and daemons up to poke at).
#
# `make test` runs the same checks, and the CRI path (crictl runp/stopp/rmp),
# in test/containerd_test.go (TestContainerd), installed by `make deps`. This
# script stays for manual use and shows one more thing the test does not:
# that a detached `ctr run -d` never sends DEL. It installs containerd, runc
# and busybox-static when they are missing.
#
#   make build && hack/containerd-check.sh        # KEEP=1 keeps everything up
#
# It builds a simulated 2-host cluster with hack/cluster.sh (fabric + devetcd,
# overlayd per host), then runs one containerd daemon PER HOST inside the
# host's network namespace (nsenter --net, the machine's mount namespace),
# each with its own config, root, state, opt dir and gRPC socket in a temp
# dir, the CRI plugin disabled. Containers run from a busybox rootfs
# directory (`ctr run --rootfs`), no image or registry needed.
#
# What ctr 1.6.20 does with --cni (cmd/ctr/commands/run/run.go, go-cni 1.1.6),
# and so what this check has to work with:
#
#   - It is `ctr run`, the CLIENT, that runs CNI (not the daemon), so ctr runs
#     in the host's network namespace too. CNI_NETNS is /proc/PID/ns/net of
#     the task (runc made the netns; no /run/netns entry is created).
#   - The config comes from gocni.New(gocni.WithDefaultConf): the FIRST
#     conflist (bytewise sort) of /etc/cni/net.d, plugins from /opt/cni/bin.
#     Both are hard-coded: no flag, no env var (go-cni ignores NETCONFPATH and
#     CNI_PATH), and containerd's config only has a CNI section for CRI. So
#     this check puts ONE conflist, 00-<prefix>.conflist, in /etc/cni/net.d
#     and symlinks overlay, overlay-ipam (and portmap unless one is there) in
#     /opt/cni/bin, refusing to overwrite anything, and removes exactly those
#     (and the dirs if it created them) at the end. Since both hosts read the
#     same file, containers start one at a time: the conflist is rewritten
#     (atomically) with the target host's runDir/dataDir just before each
#     `ctr run`; ctr loads it once, at start, and keeps it in memory.
#   - CNI DEL: only a FOREGROUND `ctr run` (no -d) runs it, after its task
#     exits: task delete, then network.Remove with CNI_NETNS="" (the netns is
#     gone by then). `ctr run -d` never runs DEL, and neither `ctr task
#     kill/rm` nor `ctr container rm` knows about CNI in 1.6: a detached
#     container's address stays reserved for good. So the containers here are
#     foreground `ctr run`s in the background of this script; `ctr task kill`
#     ends one and its ctr runs DEL. The -d leak is shown as an expected
#     limitation, then freed with a plain CNI DEL of the plugins.
#
# Checks: each container gets an address of its host's subnet and the IPAM
# store names it (containerID <namespace>-<id>); a container on h1 pings one
# on h2 and back; `ctr task kill` (+ ctr's CNI DEL, + `ctr container rm`)
# removes the host veth and frees the reservation; a new container starts
# after and reaches h2.
#
# Outside the state dir, besides /etc/cni/net.d and /opt/cni/bin, ctr 1.6
# also uses: /run/containerd/s (shim sockets; path fixed), libcni's cache
# /var/lib/cni/results, and one cgroup /PREFIX-ID per container in each
# hierarchy (--cgroup; ctr's default /NAMESPACE/ID would leave /NAMESPACE
# behind). The runc root (--runc-root) and FIFOs (--fifo-dir) go to temp dirs.
# containerd and the foreground ctr runs are started under setsid, so a
# Ctrl-C reaches only this script and teardown can still use the daemons.
#
# Teardown (pass or fail): tasks and containers, ctr clients and containerd
# daemons (by recorded PID), processes left in our cgroups and shims left for
# our sockets, libcni cache entries of this run, every file and dir recorded
# as made outside the state dir (removed only if still empty for dirs),
# overlayd/devetcd and the cluster namespaces; then `ip netns list` is
# compared with before.
set -euo pipefail

# shellcheck source=hack/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
# shellcheck source=hack/check-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/check-lib.sh"

CIDR=10.244.0.0/16
HOSTS=2
KEEP="${KEEP:-0}"
CONFLIST="$CLUSTER_REPO/conf/10-overlay.conflist"
CNI_CONF_DIR=/etc/cni/net.d # go-cni DefaultNetDir, fixed in ctr 1.6
CNI_BIN_DIR=/opt/cni/bin    # go-cni DefaultCNIDir, fixed in ctr 1.6
CTR_NS=ovl                  # containerd namespace; containerIDs are ovl-<name>
NETNS_BEFORE="$(ip netns list 2>/dev/null | awk '{print $1}' | sort)"
ROOTFS=""
CNI_CONF_FILE=""

declare -A CIP  # container name -> IP

# --- install -------------------------------------------------------------------

install_containerd() {
	local missing=()
	command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
	command -v runc >/dev/null || missing+=(runc)
	[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -x ping >/dev/null || missing+=(busybox-static)
	((${#missing[@]} == 0)) && return 0
	echo "  installing ${missing[*]} (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$OVL_STATE/apt.log" 2>&1 ||
		die "apt-get install ${missing[*]} failed; log $OVL_STATE/apt.log"
}

# --- files outside the state dir ---------------------------------------------
#
# Every file or dir made in /etc/cni/net.d, /opt/cni/bin or /run/containerd is
# recorded first ("extfile PATH" / "extdir PATH") so teardown removes exactly
# those.

# ext_mkdir DIR creates DIR and its missing parents, recording each.
ext_mkdir() {
	local d="$1" missing=()
	while [[ ! -d "$d" ]]; do
		missing=("$d" "${missing[@]}")
		d="$(dirname "$d")"
	done
	for d in "${missing[@]}"; do
		record "extdir $d"
		mkdir "$d"
	done
}

# cni_install puts the plugin symlinks into /opt/cni/bin. An existing
# overlay or overlay-ipam that is not ours stops the check (it would be
# shadowed or run instead of bin/); an existing portmap is used as is.
cni_install() {
	local b
	ext_mkdir "$CNI_BIN_DIR"
	ext_mkdir "$CNI_CONF_DIR"
	for b in overlay overlay-ipam portmap; do
		if [[ -e "$CNI_BIN_DIR/$b" || -L "$CNI_BIN_DIR/$b" ]]; then
			[[ "$b" == portmap ]] && { echo "$CNI_BIN_DIR/portmap exists, used as is"; continue; }
			echo "$CNI_BIN_DIR/$b exists and is not this run's; remove it or run elsewhere"
			return 1
		fi
		record "extfile $CNI_BIN_DIR/$b"
		ln -s "$OVL_BIN/$b" "$CNI_BIN_DIR/$b"
	done
	record "extfile $CNI_CONF_FILE"
	# Record /run/containerd/s (shim sockets, fixed path in 1.6) if missing.
	ext_mkdir /run/containerd/s
}

# cni_use_host N (re)writes the shared conflist for host N: the shipped
# conf/10-overlay.conflist with runDir and dataDir in host N's dirs. The
# rename makes it atomic for a ctr reading it concurrently. It checks ctr
# would pick it: the first .conf/.conflist/.json of the dir, bytewise.
cni_use_host() {
	local n="$1" dir first
	dir="$(host_dir "$n")"
	jq --arg run "$dir/run" --arg data "$dir/cni" \
		'(.plugins[] | select(.type == "overlay")) |= (.runDir = $run | .ipam.dataDir = $data)' \
		"$CONFLIST" >"$CNI_CONF_FILE.tmp"
	mv -f "$CNI_CONF_FILE.tmp" "$CNI_CONF_FILE"
	first="$(find "$CNI_CONF_DIR" -maxdepth 1 \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) -printf '%f\n' | LC_ALL=C sort | head -n 1)"
	[[ "$first" == "$(basename "$CNI_CONF_FILE")" ]] ||
		{ echo "ctr would load $CNI_CONF_DIR/$first, not our $(basename "$CNI_CONF_FILE")"; return 1; }
}

# --- containerd ----------------------------------------------------------------

ctrd_dir() { echo "$(host_dir "$1")/containerd"; }
ctrd_sock() { echo "$(ctrd_dir "$1")/containerd.sock"; }

# ctrd_start N writes host N's containerd config and starts the daemon in
# host N's network namespace. nsenter without --fork execs containerd in
# place, so $! is containerd's PID.
ctrd_start() {
	local n="$1" cd pid start
	cd="$(ctrd_dir "$n")"
	mkdir -p "$cd"/{root,state,opt,fifo,runc}
	cat >"$cd/config.toml" <<-EOF
		version = 2
		root = "$cd/root"
		state = "$cd/state"
		disabled_plugins = ["io.containerd.grpc.v1.cri"]

		[grpc]
		  address = "$cd/containerd.sock"

		[ttrpc]
		  address = "$cd/containerd.sock.ttrpc"

		[plugins."io.containerd.internal.v1.opt"]
		  path = "$cd/opt"
	EOF
	# setsid: its own session, so a Ctrl-C (SIGINT to the script's process
	# group) does not stop the daemon before teardown has used it. A
	# background job of a script is no group leader, so setsid execs in place.
	setsid nsenter --net="/run/netns/$(host_ns "$n")" -- containerd --config "$cd/config.toml" \
		>"$cd/containerd.log" 2>&1 </dev/null &
	pid=$!
	start="$(proc_start_time "$pid" || echo 0)"
	record "pid $pid $start containerd"
	echo "$pid" >"$cd/containerd.pid"
	wait_for 30 "containerd on h$n (log $cd/containerd.log)" ctrd_ready "$n" "$pid"
	kill -0 "$pid" 2>/dev/null || { echo "containerd on h$n exited: $(tail -n 3 "$cd/containerd.log")"; return 1; }
}

ctrd_ready() {
	kill -0 "$2" 2>/dev/null || return 0
	c "$1" version
}

# c N ARGS... runs ctr against host N's containerd, in host N's netns (so
# the CNI plugins ctr runs act there, as on a real host).
c() {
	local n="$1"
	shift
	nsenter --net="/run/netns/$(host_ns "$n")" -- ctr -a "$(ctrd_sock "$n")" -n "$CTR_NS" "$@"
}

# record_shim_socket N NAME records the socket the shim of container NAME
# makes in /run/containerd/s (fixed there in 1.6): sha256 of
# "<containerd address>/<namespace>/<id>". A shim removes it when it exits
# normally; teardown removes it when a shim had to be killed.
record_shim_socket() {
	local h
	h="$(printf '%s' "$(ctrd_sock "$1")/$CTR_NS/$2" | sha256sum | awk '{print $1}')"
	record "extfile /run/containerd/s/$h"
}

# task_status N NAME prints the task's status (RUNNING, STOPPED...) or nothing.
task_status() {
	c "$1" task ls 2>/dev/null | awk -v id="$2" '$1 == id {print $3}'
}

# run_container N NAME [CMD...] starts a FOREGROUND `ctr run --cni` in the
# background (the only ctr 1.6 mode that runs CNI DEL when the task ends),
# waits until the task runs (CNI ADD happens before task start) and prints the
# container's eth0 address.
run_container() {
	local n="$1" name="$2" log pid start deadline ip
	shift 2
	(($# > 0)) || set -- /bin/busybox sleep 600
	log="$(ctrd_dir "$n")/run-$name.log"
	cni_use_host "$n"
	record "ccontainer $n $name"
	record_shim_socket "$n" "$name"
	setsid nsenter --net="/run/netns/$(host_ns "$n")" -- ctr -a "$(ctrd_sock "$n")" -n "$CTR_NS" \
		run --cni --null-io --fifo-dir "$(ctrd_dir "$n")/fifo" --runc-root "$(ctrd_dir "$n")/runc" \
		--cgroup "/$OVL_PREFIX-$name" --rootfs "$ROOTFS" "$name" "$@" \
		>"$log" 2>&1 </dev/null &
	pid=$!
	start="$(proc_start_time "$pid" || echo 0)"
	record "pid $pid $start ctr-run-$name"
	echo "$pid" >"$(ctrd_dir "$n")/run-$name.pid"
	deadline=$((SECONDS + 30))
	until [[ "$(task_status "$n" "$name")" == RUNNING ]]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "ctr run $name on h$n exited (log $log):"
			tail -n 8 "$log"
			return 1
		fi
		((SECONDS < deadline)) || { echo "task $name not RUNNING after 30s (log $log)"; return 1; }
		sleep 0.2
	done
	ip="$(cexec "$n" "$name" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)"
	[[ -n "$ip" ]] || { echo "no IPv4 address on eth0 in $name"; return 1; }
	echo "$ip"
}

# start_container N NAME [CMD...]: a check step running run_container; the
# check stops here when the container cannot start.
start_container() {
	local n="$1" name="$2" out
	CUR_STEP="ctr run --cni $name on h$n"
	step "$CUR_STEP"
	out="$(run_container "$@" 2>&1)" || die "$out"
	CIP[$name]="$out"
	done_ok "$out, pid $(c "$n" task ls | awk -v id="$name" '$1 == id {print $2}')"
}

# cexec N NAME APPLET ARGS... runs a busybox applet in container NAME's task.
cexec() {
	local n="$1" name="$2"
	shift 2
	c "$n" task exec --fifo-dir "$(ctrd_dir "$n")/fifo" --exec-id "x$RANDOM$RANDOM" "$name" /bin/busybox "$@"
}

# --- checks ------------------------------------------------------------------

# check_ip N NAME: the address is in host N's subnet, and host N's IPAM store
# reserved it for ctr's containerID (<namespace>-<name>).
check_ip() {
	local n="$1" name="$2" ip subnet res
	ip="${CIP[$name]}"
	subnet="$(host_subnet "$n")"
	ip_in_subnet "$ip" "$subnet" || { echo "$name: $ip not in h$n's subnet $subnet"; return 1; }
	res="$(reservation "$n" "$ip")"
	[[ "$res" == "$CTR_NS-$name" ]] || { echo "h$n ips/$ip names '$res', want $CTR_NS-$name"; return 1; }
	echo "$ip in $subnet, reserved for $res"
}

check_ping() {
	local n="$1" name="$2" dst="$3" out
	if ! out="$(cexec "$n" "$name" ping -c 3 -W 2 "$dst" 2>&1)"; then
		echo "$out" | tail -n 4
		return 1
	fi
	grep -o '[0-9]* packets received.*' <<<"$out"
}

# check_kill N NAME: `ctr task kill` ends the task; the foreground ctr run
# then deletes the task and runs CNI DEL (CNI_NETNS=""), which must free the
# address; the host veth went with the netns. `ctr container rm` follows.
check_kill() {
	local n="$1" name="$2" ip iflink hns pid deadline res log
	ip="${CIP[$name]}"
	hns="$(host_ns "$n")"
	log="$(ctrd_dir "$n")/run-$name.log"
	pid="$(cat "$(ctrd_dir "$n")/run-$name.pid")"
	iflink="$(cexec "$n" "$name" cat /sys/class/net/eth0/iflink)"
	ip -n "$hns" -o link show | grep -q "^$iflink: veth" ||
		{ echo "no host veth with index $iflink (eth0's peer) in $hns"; return 1; }
	[[ -n "$(attachments_of "$n" "$CTR_NS-$name")" ]] || { echo "before kill: no attachment index for $CTR_NS-$name"; return 1; }
	c "$n" task kill -s SIGKILL "$name"
	deadline=$((SECONDS + 20))
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || { echo "ctr run $name still running 20s after task kill"; return 1; }
		sleep 0.2
	done
	if grep -qiE 'level=error|network review|failed' "$log"; then
		echo "ctr run logged errors (log $log):"
		tail -n 5 "$log"
		return 1
	fi
	[[ -z "$(task_status "$n" "$name")" ]] || { echo "task $name still listed: $(task_status "$n" "$name")"; return 1; }
	c "$n" container rm "$name" || { echo "ctr container rm $name failed"; return 1; }
	if ip -n "$hns" -o link show | grep -q "^$iflink: "; then
		echo "host veth $iflink still in $hns"
		return 1
	fi
	res="$(reservation "$n" "$ip")"
	[[ -z "$res" ]] || { echo "after kill: $ip still reserved for $res"; return 1; }
	res="$(attachments_of "$n" "$CTR_NS-$name")"
	[[ -z "$res" ]] || { echo "after kill: attachment index left: $res"; return 1; }
	echo "host veth (ifindex $iflink) gone, $ip released, container removed"
}

# check_detached N NAME: `ctr run -d --cni` attaches like the foreground run,
# but ctr 1.6 never runs DEL for it: after `ctr task kill`, `ctr task rm` and
# `ctr container rm` the veth is gone (with the netns) and the address is
# still reserved. This asserts that known limitation, then frees the address
# with a CNI DEL of the conflist's plugins (containerID ovl-NAME, no netns),
# as a runtime's garbage collection would.
check_detached() {
	local n="$1" name="$2" ip dir res out
	dir="$(host_dir "$n")"
	cni_use_host "$n"
	record "ccontainer $n $name"
	record_shim_socket "$n" "$name"
	out="$(c "$n" run -d --cni --null-io --fifo-dir "$(ctrd_dir "$n")/fifo" --runc-root "$(ctrd_dir "$n")/runc" --cgroup "/$OVL_PREFIX-$name" --rootfs "$ROOTFS" "$name" /bin/busybox sleep 600 2>&1)" ||
		{ echo "ctr run -d: $out"; return 1; }
	ip="$(cexec "$n" "$name" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)"
	ip_in_subnet "$ip" "$(host_subnet "$n")" || { echo "$name: '$ip' not in h$n's subnet"; return 1; }
	[[ "$(reservation "$n" "$ip")" == "$CTR_NS-$name" ]] || { echo "ips/$ip names '$(reservation "$n" "$ip")'"; return 1; }
	c "$n" task kill -s SIGKILL "$name"
	for _ in $(seq 50); do [[ "$(task_status "$n" "$name")" == STOPPED ]] && break; sleep 0.2; done
	c "$n" task rm "$name" >/dev/null 2>&1
	c "$n" container rm "$name"
	res="$(reservation "$n" "$ip")"
	[[ "$res" == "$CTR_NS-$name" ]] || { echo "ctr 1.6 ran DEL after all? ips/$ip names '$res' (update this check)"; return 1; }
	# The DEL a runtime's GC would send: same containerID and ifname, no
	# netns (it is gone), the conflist ctr used, each plugin in reverse
	# order as libcni does (cnitool cannot: it derives the containerID from
	# the netns path).
	cni_del_list "$n" "$CTR_NS-$name" eth0 >"$dir/cni-del-$name.log" 2>&1 ||
		{ echo "CNI DEL failed: $(tail -n 3 "$dir/cni-del-$name.log")"; return 1; }
	res="$(reservation "$n" "$ip")"
	[[ -z "$res" ]] || { echo "after DEL: $ip still reserved for $res"; return 1; }
	[[ -z "$(attachments_of "$n" "$CTR_NS-$name")" ]] || { echo "after DEL: attachment index left"; return 1; }
	echo "$ip stayed reserved after ctr rm (no DEL in ctr -d), freed by a plain CNI DEL"
}

# cni_del_list N ID IFNAME runs CNI DEL for every plugin of the installed
# conflist, last first, in host N's netns, with CNI_NETNS empty.
cni_del_list() {
	local n="$1" id="$2" ifname="$3" i count conf type
	count="$(jq '.plugins | length' "$CNI_CONF_FILE")"
	for ((i = count - 1; i >= 0; i--)); do
		conf="$(jq -c --argjson i "$i" '.plugins[$i] + {name: .name, cniVersion: .cniVersion}' "$CNI_CONF_FILE")"
		type="$(jq -r .type <<<"$conf")"
		echo "DEL $type"
		ip netns exec "$(host_ns "$n")" env CNI_COMMAND=DEL CNI_CONTAINERID="$id" CNI_NETNS= \
			CNI_IFNAME="$ifname" CNI_PATH="$CNI_BIN_DIR" "$CNI_BIN_DIR/$type" <<<"$conf" || return 1
	done
}

# --- teardown ----------------------------------------------------------------

ctrd_down() {
	local state="$OVL_STATE/state" kind a b pid f cd
	[[ -f "$state" ]] || return 0
	# Kill every task of our daemons; foreground ctr runs then run DEL.
	while read -r kind a b; do
		[[ "$kind" == ccontainer ]] || continue
		c "$a" task kill -s SIGKILL "$b" >/dev/null 2>&1 || true
	done <"$state"
	# Give the foreground ctr runs a moment to run DEL and exit.
	while read -r kind pid _ b; do
		[[ "$kind" == pid && "$b" == ctr-run-* ]] || continue
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	done <"$state"
	while read -r kind a b; do
		[[ "$kind" == ccontainer ]] || continue
		c "$a" task rm -f "$b" >/dev/null 2>&1 || true
		c "$a" container rm "$b" >/dev/null 2>&1 || true
	done <"$state"
	# Anything still in a cgroup of ours (the containers' processes, when
	# containerd was gone before it could kill them), then shims whose
	# -address is one of our sockets (they outlive containerd).
	for f in /sys/fs/cgroup/*/"$OVL_PREFIX"-*/cgroup.procs /sys/fs/cgroup/"$OVL_PREFIX"-*/cgroup.procs; do
		[[ -f "$f" ]] || continue
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null && echo "  killed container process $pid ($(dirname "$f"))"
		done <"$f"
	done
	for f in /proc/[0-9]*/cmdline; do
		pid="${f#/proc/}" pid="${pid%/cmdline}"
		# The group: a process that ended since the glob fails the redirect.
		{ tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q "containerd-shim.*-address $OVL_STATE/" || continue
		kill -KILL "$pid" 2>/dev/null && echo "  killed shim $pid left for $OVL_STATE"
	done
	# Cgroups: ctr's default path /NAMESPACE/ID leaves /NAMESPACE behind in
	# every hierarchy, so each container gets a one-level /PREFIX-ID, which
	# runc removes on delete; remove (empty) ones a failed delete left.
	sleep 0.3 # let killed processes leave their cgroups
	for f in /sys/fs/cgroup/*/"$OVL_PREFIX"-* /sys/fs/cgroup/"$OVL_PREFIX"-*; do
		[[ -d "$f" ]] || continue
		rmdir "$f" 2>/dev/null && echo "  removed cgroup $f left by runc" || echo "  cgroup $f not removable"
	done
	# containerd's own mounts under its root, if any.
	for cd in "$OVL_STATE"/h*/containerd; do
		[[ -d "$cd" ]] || continue
		grep -F " $cd/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r f; do umount "$f" 2>/dev/null || true; done
	done
	# libcni's result cache (/var/lib/cni, fixed in go-cni): DEL removes an
	# entry; drop any of this run's that a missing DEL left.
	for f in /var/lib/cni/results/overlay-*; do
		[[ -f "$f" ]] || continue
		jq -e --arg d "$OVL_STATE/" '.config | @base64d | fromjson | .plugins[0].runDir | startswith($d)' \
			"$f" >/dev/null 2>&1 || continue
		rm -f "$f"
		echo "  removed libcni cache entry $f (its DEL never ran)"
	done
}

# ext_down removes the recorded files, then the recorded dirs (deepest first,
# only if empty).
ext_down() {
	local state="$OVL_STATE/state" kind a
	[[ -f "$state" ]] || return 0
	while read -r kind a; do
		[[ "$kind" == extfile ]] || continue
		rm -f "$a" "$a.tmp"
	done <"$state"
	tac "$state" | while read -r kind a; do
		[[ "$kind" == extdir ]] || continue
		rmdir "$a" 2>/dev/null || echo "  $a not empty, left in place: $(ls -A "$a" | tr '\n' ' ')"
	done
}

on_exit() {
	local rc=$? after left
	trap - EXIT
	set +e # best effort from here: one failed step must not skip the rest
	((STEP_OPEN == 0)) || echo "FAILED"
	((rc != 130)) || echo "interrupted"
	[[ -n "${OVL_STATE:-}" ]] || exit "$rc"
	if ((rc != 0 || ${#PROBLEMS[@]} > 0)); then
		local keep
		keep="$(mktemp -d /tmp/ovl-containerd-logs.XXXXXX)"
		(cd "$OVL_STATE" && find . -name '*.log' -exec cp --parents {} "$keep" \;)
		echo "  logs saved in $keep"
	fi
	if [[ "$KEEP" == 1 ]]; then
		echo "kept: state $OVL_STATE; remove with ctr task kill/container rm and hack/cluster.sh down $OVL_STATE,"
		echo "      and the extfile/extdir entries of $OVL_STATE/state"
		exit "$rc"
	fi
	ctrd_down
	ext_down
	cluster_down "$OVL_STATE" || echo "teardown incomplete: run hack/cluster.sh down $OVL_STATE" >&2
	after="$(ip netns list 2>/dev/null | awk '{print $1}' | sort)"
	left="$(comm -13 <(echo "$NETNS_BEFORE") <(echo "$after") | grep -E "^($OVL_PREFIX-|cni-)" || true)"
	if [[ -n "$left" ]]; then
		echo "  netns left behind (not in ip netns list before): $(tr '\n' ' ' <<<"$left")"
		PROBLEMS+=("netns left behind")
		rc=1
	else
		echo "  cleanup: no $OVL_PREFIX-* netns left (ctr makes none); $CNI_CONF_DIR, $CNI_BIN_DIR as before"
	fi
	echo
	if ((rc == 0 && ${#PROBLEMS[@]} == 0)); then
		echo "RESULT: PASS (${#PASSED[@]} checks)"
	else
		((${#PROBLEMS[@]} == 0)) || printf '  problem: %s\n' "${PROBLEMS[@]}"
		echo "RESULT: FAIL"
		rc=1
	fi
	exit "$rc"
}

# --- main ----------------------------------------------------------------------

trap on_exit EXIT
trap 'exit 130' INT TERM

cluster_init
CNI_CONF_FILE="$CNI_CONF_DIR/00-$OVL_PREFIX.conflist"
echo "overlay containerd check: $HOSTS hosts, network $OVL_NETWORK $CIDR, ctr run --cni"
echo "  (namespaces $OVL_PREFIX-*, state $OVL_STATE)"
CUR_STEP=setup
install_containerd
# /etc/cni/net.d, /opt/cni/bin and /run/containerd/s are shared with
# test/containerd_test.go and other runs of this script: one at a time.
exec 9>>/run/lock/overlay-e2e-containerd.lock
flock -w 300 9 || die "/run/lock/overlay-e2e-containerd.lock still held after 300s ($(cat /run/lock/overlay-e2e-containerd.lock))"
echo "  $(containerd --version | awk '{print "containerd", $3}'), $(ctr --version | awk '{print "ctr", $3}'), $(runc --version | head -n 1)"

step "fabric + devetcd, hosts h1 h2"
cluster_fabric_up
cluster_etcd_up || die "devetcd did not start; log $OVL_STATE/devetcd.log"
for ((n = 1; n <= HOSTS; n++)); do cluster_host_add "$n"; done
cluster_ctl network set "$OVL_NETWORK" --cidr "$CIDR" >"$OVL_STATE/overlayctl.log" 2>&1 ||
	die "$(tail -n 3 "$OVL_STATE/overlayctl.log")"
for ((n = 1; n <= HOSTS; n++)); do cluster_overlayd_start "$n"; done
for ((n = 1; n <= HOSTS; n++)); do
	cluster_wait_host "$n" 60 2>"$OVL_STATE/wait.err" || die "$(cat "$OVL_STATE/wait.err")"
done
done_ok "h1 $(host_subnet 1), h2 $(host_subnet 2)"

CUR_STEP="CNI files in $CNI_CONF_DIR, $CNI_BIN_DIR + busybox rootfs"
step "$CUR_STEP"
make_rootfs
out="$(cni_install 2>&1)" || die "$out"
out2="$(cni_use_host 1 2>&1)" || die "$out2"
done_ok "$(basename "$CNI_CONF_FILE")${out:+; $out}"

CUR_STEP="containerd per host (nsenter --net)"
step "$CUR_STEP"
for ((n = 1; n <= HOSTS; n++)); do
	out="$(ctrd_start "$n" 2>&1)" || die "$out"
done
done_ok "pids $(cat "$(ctrd_dir 1)/containerd.pid") $(cat "$(ctrd_dir 2)/containerd.pid")"

start_container 1 c1
start_container 2 c2
check "c1 (h1): address in h1's subnet" check_ip 1 c1
check "c2 (h2): address in h2's subnet" check_ip 2 c2
check "ping h1/c1 -> h2/c2 ${CIP[c2]}" check_ping 1 c1 "${CIP[c2]}"
check "ping h2/c2 -> h1/c1 ${CIP[c1]}" check_ping 2 c2 "${CIP[c1]}"
check "ctr task kill c1 (ctr's CNI DEL) + container rm: freed" check_kill 1 c1

start_container 1 c3
check "c3 (h1): address in h1's subnet" check_ip 1 c3
check "ping h2/c2 -> h1/c3 ${CIP[c3]}" check_ping 2 c2 "${CIP[c3]}"
check "ping h1/c3 -> h2/c2 ${CIP[c2]}" check_ping 1 c3 "${CIP[c2]}"
check "ctr task kill c3 (ctr's CNI DEL) + container rm: freed" check_kill 1 c3
check "ctr run -d d1 (h1): no DEL in ctr 1.6; a CNI DEL frees" check_detached 1 d1
check "ctr task kill c2 (ctr's CNI DEL) + container rm: freed" check_kill 2 c2
