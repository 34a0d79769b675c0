#!/usr/bin/env bash
# podman-check.sh validates the CNI plugins against a real runtime: podman 4.3
# (Debian 12) with its CNI network backend, step by step, as a person would
# (KEEP=1 leaves the cluster and containers up to poke at).
#
# `make test` runs the same checks in test/podman_test.go (TestPodman),
# installed by `make deps`; this script stays for manual use. It installs
# podman and busybox-static when they are missing.
#
#   make build && hack/podman-check.sh        # KEEP=1 keeps everything up
#
# It builds a simulated 2-host cluster with hack/cluster.sh (fabric + devetcd,
# overlayd per host), then runs podman INSIDE each host namespace with all of
# podman's state in temp dirs (--root, --runroot, --tmpdir, CONTAINERS_CONF):
# network backend "cni", plugin dir bin/, network config dir holding the
# shipped conf/10-overlay-podman.conflist (overlay + portmap + firewall +
# tuning) with runDir/dataDir pointing at the host's dirs, the firewall
# plugin's backend pinned to iptables (left empty it would use a firewalld
# answering on the machine's D-Bus) and tuning's backups in the host's dir. Containers run from a busybox rootfs directory
# (--rootfs), no image registry needed.
#
# Checks: each container gets an address of its host's subnet; a container on
# h1 pings one on h2 and back; --mac-address reaches eth0 (podman passes it
# in CNI_ARGS, the chained tuning plugin sets it) and the firewall plugin's
# rules for the address exist while it runs and are gone after rm; `podman rm -f` (CNI DEL) removes the host veth
# and frees the IPAM reservation; a second container starts after and reuses
# nothing still in use. Teardown (pass or fail) removes podman's containers and
# dirs, the cni-* namespaces podman made (only those), the containers'
# cgroups, overlayd/devetcd and the cluster namespaces, then checks `ip netns
# list` is as it was before. Nothing of podman's lands outside the state dir
# but netns files and libcni's cache: containers (and conmon) get the parent
# cgroup /PREFIX-hN, not libpod_parent; runc keeps its state under
# --runtime-flag root=..., not /run/runc; locks are files in tmp_dir
# (lock_type), not /dev/shm/libpod_lock.
set -euo pipefail

# shellcheck source=hack/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
# shellcheck source=hack/check-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/check-lib.sh"

CIDR=10.244.0.0/16
HOSTS=2
KEEP="${KEEP:-0}"
CONFLIST="$CLUSTER_REPO/conf/10-overlay-podman.conflist"
START_EPOCH="$(date +%s)"
NETNS_BEFORE="$(ip netns list 2>/dev/null | awk '{print $1}' | sort)"
ROOTFS=""

declare -A CIP # container name -> IP

# --- podman ------------------------------------------------------------------

install_podman() {
	local missing=()
	command -v podman >/dev/null || missing+=(podman)
	[[ "$OCI_RUNTIME" != runc ]] || command -v runc >/dev/null || missing+=(runc)
	[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -x ping >/dev/null || missing+=(busybox-static)
	((${#missing[@]} == 0)) && return 0
	echo "  installing ${missing[*]} (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$OVL_STATE/apt.log" 2>&1 ||
		die "apt-get install ${missing[*]} failed; log $OVL_STATE/apt.log"
}

# OCI_RUNTIME: podman 4.3 on Debian 12 pulls in crun 1.8, which refuses a
# hybrid cgroup machine whose cgroup2 (/sys/fs/cgroup/unified) has controllers
# ("cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2"). runc (the other runtime the podman package accepts) runs there.
OCI_RUNTIME="${OCI_RUNTIME:-}"
if [[ -z "$OCI_RUNTIME" ]]; then
	OCI_RUNTIME=crun
	if [[ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]]; then OCI_RUNTIME=runc; fi
fi

# podman_setup N writes host N's podman config: containers.conf (CNI backend,
# plugins from bin/, network config dir with the shipped conflist) and
# storage.conf (vfs, root and runroot in temp dirs).
podman_setup() {
	local n="$1" dir pd NOFILE NPROC
	dir="$(host_dir "$n")"
	pd="$dir/podman"
	mkdir -p "$pd"/{root,runroot,tmp,net.d,volumes,runc}
	NOFILE="$(ulimit -Hn)" NPROC="$(ulimit -Hu)"
	[[ "$NOFILE" != unlimited ]] || NOFILE=1048576
	[[ "$NPROC" != unlimited ]] && ((NPROC < 32768)) || NPROC=32768
	record "podman $n $pd"
	jq --arg run "$dir/run" --arg data "$dir/cni" --arg tuning "$dir/tuning" \
		'(.plugins[] | select(.type == "overlay")) |= (.runDir = $run | .ipam.dataDir = $data)
		| (.plugins[] | select(.type == "firewall" and (.backend // "") == "")) |= (.backend = "iptables")
		| (.plugins[] | select(.type == "tuning")) |= (.dataDir = $tuning)' \
		"$CONFLIST" >"$pd/net.d/10-overlay.conflist"
	cat >"$pd/containers.conf" <<-EOF
		[network]
		network_backend = "cni"
		cni_plugin_dirs = ["$OVL_BIN"]
		network_config_dir = "$pd/net.d"
		default_network = "overlay"

		[containers]
		# podman 4.3 asks for nofile=1048576 and nproc=4194304 for root
		# containers, and lowers its own nproc to 32768 first: without
		# CAP_SYS_RESOURCE (a sandboxed machine) crun's setrlimit fails (EPERM).
		default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]

		[engine]
		cgroup_manager = "cgroupfs"
		runtime = "$OCI_RUNTIME"
		events_logger = "file"
		events_logfile_path = "$pd/events.log"
		tmp_dir = "$pd/tmp"
		volume_path = "$pd/volumes"
		static_dir = "$pd/root/libpod"
		lock_type = "file"
	EOF
	cat >"$pd/storage.conf" <<-EOF
		[storage]
		driver = "vfs"
		graphroot = "$pd/root"
		runroot = "$pd/runroot"
	EOF
}

# How podman enters a host namespace (PODMAN_NSENTER):
#
#   nsenter (default)  nsenter --net=/run/netns/HOST podman ...: the host's
#                      network namespace, the machine's mount namespace, which
#                      is what podman has on a real host.
#   ipnetns            ip netns exec HOST podman ...: does NOT work for more
#                      than one podman command. `ip netns exec` gives every
#                      command a new private (slave) mount namespace, so the
#                      bind mount podman makes for a container's netns
#                      (/run/netns/netns-UUID) exists only in the mount
#                      namespace of the `podman run` that made it. The next
#                      `podman exec/inspect/rm` sees an empty file ("unknown FS
#                      magic ... ef53"), cannot join the netns, and `podman rm`
#                      skips CNI DEL ("Peer netns reference is invalid"): the
#                      IPAM reservation leaks and an empty /run/netns/netns-*
#                      file is left behind. It also hides the cgroup mounts
#                      (fresh sysfs on /sys), which this mode re-mounts.
PODMAN_NSENTER="${PODMAN_NSENTER:-nsenter}"

# cgroup_mounts prints shell commands that mount the machine's cgroup v1
# hierarchies again under /sys/fs/cgroup, for PODMAN_NSENTER=ipnetns: `ip
# netns exec` mounts a fresh sysfs on /sys in its private mount namespace,
# which hides them, and crun then fails ("invalid file system type on
# '/sys/fs/cgroup'"). Only that private mount namespace is touched.
cgroup_mounts() {
	local mnt fs opts o keep
	while read -r _ mnt fs opts _; do
		[[ "$mnt" == /sys/fs/cgroup || "$mnt" == /sys/fs/cgroup/* ]] || continue
		case "$fs" in
		tmpfs) echo "mount -t tmpfs -o mode=755 tmpfs $mnt" ;;
		# A hybrid machine's cgroup2 at /sys/fs/cgroup/unified is left out:
		# crun 1.8 refuses hybrid mode when it has controllers ("cgroups in
		# hybrid mode not supported"), and cgroup v1 alone is enough.
		cgroup2) [[ "$mnt" != /sys/fs/cgroup ]] || echo "mount -t cgroup2 cgroup2 $mnt" ;;
		cgroup)
			keep=""
			for o in ${opts//,/ }; do
				case "$o" in rw | ro | relatime | noatime | nosuid | nodev | noexec) ;; *) keep+="${keep:+,}$o" ;; esac
			done
			echo "mkdir -p $mnt && mount -t cgroup -o $keep cgroup $mnt"
			;;
		esac
	done </proc/self/mounts
}

# pm N ARGS... runs podman in host N's network namespace with host N's
# config and all of its state in host N's temp dirs.
pm() {
	local n="$1" pd enter
	shift
	pd="$(host_dir "$n")/podman"
	case "$PODMAN_NSENTER" in
	nsenter) enter=(nsenter "--net=/run/netns/$(host_ns "$n")" --) ;;
	ipnetns) enter=(ip netns exec "$(host_ns "$n")" bash -c "$(cgroup_mounts | paste -sd ';'); exec \"\$@\"" podman) ;;
	*) echo "PODMAN_NSENTER must be nsenter or ipnetns" >&2; return 2 ;;
	esac
	"${enter[@]}" env \
		CONTAINERS_CONF="$pd/containers.conf" CONTAINERS_STORAGE_CONF="$pd/storage.conf" \
		podman --root "$pd/root" --runroot "$pd/runroot" --tmpdir "$pd/tmp" \
		--storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime "$OCI_RUNTIME" \
		--runtime-flag "root=$pd/runc" \
		${PODMAN_LOG_LEVEL:+--log-level "$PODMAN_LOG_LEVEL"} "$@"
}

# run_container N NAME starts a busybox container on host N and records its
# sandbox (podman's cni-* netns) and IP.
run_container() {
	local n="$1" name="$2" log sandbox ip
	shift 2
	(($# > 0)) || set -- /bin/busybox sleep 300
	log="$(host_dir "$n")/podman/run-$name.log"
	record "pcontainer $n $name"
	# Not --log-level debug: podman then passes --syslog to conmon's exit
	# command (podman container cleanup), which fails without /dev/log, so
	# a container that exits by itself is never cleaned up (no CNI DEL).
	# shellcheck disable=SC2086 # RUN_OPTS: extra podman run options
	if ! PODMAN_LOG_LEVEL=info pm "$n" run -d --name "$name" --network overlay ${RUN_OPTS:-} \
		--cgroup-parent "/$OVL_PREFIX-h$n" \
		--rootfs "$ROOTFS" "$@" >"$log" 2>&1; then
		echo "podman run $name on h$n failed (log $log):"
		grep -E 'level=(error|warning)|Error|error' "$log" | tail -n 8
		return 1
	fi
	sandbox="$(pm "$n" inspect -f '{{.NetworkSettings.SandboxKey}}' "$name")"
	[[ -z "$sandbox" ]] || record "cninetns $(basename "$sandbox")"
	ip="$(pm "$n" inspect -f '{{(index .NetworkSettings.Networks "overlay").IPAddress}}' "$name")"
	echo "$ip (netns $(basename "$sandbox"))"
}

# start_container N NAME [CMD...]: a check step running run_container and
# remembering the IP; the check stops here when the container cannot start.
start_container() {
	local n="$1" name="$2" out
	CUR_STEP="podman run $name on h$n${RUN_OPTS:+ $RUN_OPTS}"
	step "$CUR_STEP"
	out="$(run_container "$@" 2>&1)" || die "$out"
	CIP[$name]="$(pm "$n" inspect -f '{{(index .NetworkSettings.Networks "overlay").IPAddress}}' "$name")"
	done_ok "$out"
}

# --- checks ------------------------------------------------------------------

# check_ip N NAME: podman's IP for NAME is in host N's subnet and is the
# address the container's eth0 holds.
check_ip() {
	local n="$1" name="$2" ip subnet inside
	ip="${CIP[$name]}"
	subnet="$(host_subnet "$n")"
	[[ -n "$ip" ]] || { echo "podman inspect shows no IP for $name"; return 1; }
	ip_in_subnet "$ip" "$subnet" || { echo "$name: $ip not in h$n's subnet $subnet"; return 1; }
	inside="$(pm "$n" exec "$name" ip -4 -o addr show dev eth0)"
	grep -q "inet $ip/" <<<"$inside" || { echo "eth0 in $name: $inside (want $ip)"; return 1; }
	echo "$ip in $subnet, eth0 has it"
}

check_ping() {
	local n="$1" name="$2" dst="$3" out
	if ! out="$(pm "$n" exec "$name" ping -c 3 -W 2 "$dst" 2>&1)"; then
		echo "$out" | tail -n 4
		return 1
	fi
	grep -o '[0-9]* packets received.*' <<<"$out"
}

# check_rm N NAME: podman rm -f runs CNI DEL, which removes the container's
# host veth and frees its address (IP file and index file gone).
check_rm() {
	local n="$1" name="$2" ip id iflink log res hns
	ip="${CIP[$name]}"
	hns="$(host_ns "$n")"
	id="$(pm "$n" inspect -f '{{.Id}}' "$name")"
	iflink="$(pm "$n" exec "$name" cat /sys/class/net/eth0/iflink)"
	ip -n "$hns" -o link show | grep -q "^$iflink: veth" ||
		{ echo "no host veth with index $iflink (eth0's peer) in $hns"; return 1; }
	res="$(reservation "$n" "$ip")"
	[[ "$res" == "$id" ]] || { echo "before rm: ips/$ip names '${res}', not $name ($id)"; return 1; }
	[[ -n "$(attachments_of "$n" "$id")" ]] || { echo "before rm: no attachment index for $id"; return 1; }
	log="$(host_dir "$n")/podman/rm-$name.log"
	PODMAN_LOG_LEVEL=debug pm "$n" rm -f -t 0 "$name" >"$log" 2>&1 || {
		echo "podman rm -f $name failed (log $log)"
		tail -n 5 "$log"
		return 1
	}
	if grep -qiE 'level=(error|warning).*(cni|network|netns|teardown)' "$log"; then
		echo "podman logged network errors during rm (log $log):"
		grep -iE 'level=(error|warning).*(cni|network|netns|teardown)' "$log" | tail -n 5
		return 1
	fi
	if ip -n "$hns" -o link show | grep -q "^$iflink: "; then
		echo "host veth $iflink still in $hns after rm"
		return 1
	fi
	res="$(reservation "$n" "$ip")"
	[[ -z "$res" ]] || { echo "after rm: $ip still reserved for $res"; return 1; }
	res="$(attachments_of "$n" "$id")"
	[[ -z "$res" ]] || { echo "after rm: attachment index left: $res"; return 1; }
	echo "host veth (ifindex $iflink) gone, $ip released"
}

# check_mac N NAME MAC: eth0 in NAME has MAC (podman run --mac-address).
check_mac() {
	local got
	got="$(pm "$1" exec "$2" cat /sys/class/net/eth0/address)"
	[[ "$got" == "$3" ]] || { echo "eth0 in $2 has $got, want $3"; return 1; }
	echo "eth0 $got"
}

# check_fw N IP WANT: the firewall plugin's CNI-FORWARD rules for IP in host
# N: WANT 2 while the container runs (-s IP accept, -d IP established), 0
# after rm.
check_fw() {
	local got
	got="$(ip netns exec "$(host_ns "$1")" iptables -S CNI-FORWARD 2>&1 | grep -cE -- "-[sd] $2/32 " || true)"
	[[ "$got" == "$3" ]] || { echo "CNI-FORWARD in h$1 has $got rules for $2, want $3"; return 1; }
	echo "$got rules for $2 in CNI-FORWARD"
}

# http_get N NAME HOST PORT: an HTTP GET with busybox nc from container NAME
# on host N (busybox wget segfaults in Debian's busybox-static 1.35).
http_get() {
	pm "$1" exec "$2" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $3 $4" | tail -n 1
}

# expect_body WANT CMD...: CMD prints WANT.
expect_body() {
	local want="$1" got
	shift
	got="$("$@" 2>&1)" || true
	[[ "$got" == "$want" ]] || { echo "got '${got}', want '$want'"; return 1; }
	echo "$got"
}

# check_portmap_gone N ID: portmap's DEL removed the container's DNAT rules.
check_portmap_gone() {
	local rules
	rules="$(ip netns exec "$(host_ns "$1")" iptables -t nat -S | grep -F "$2" || true)"
	[[ -z "$rules" ]] || { echo "nat rules left for $2: $rules"; return 1; }
	echo "no nat rules name $2"
}

# check_exit N NAME: a container whose command ends is torn down by conmon's
# exit command (podman container cleanup), which runs CNI DEL.
check_exit() {
	local n="$1" name="$2" ip id deadline
	ip="${CIP[$name]}"
	id="$(pm "$n" inspect -f '{{.Id}}' "$name")"
	deadline=$((SECONDS + 20))
	until [[ "$(pm "$n" inspect -f '{{.State.Status}}' "$name")" == exited && -z "$(reservation "$n" "$ip")" ]]; do
		((SECONDS < deadline)) || { echo "after 20s: state $(pm "$n" inspect -f '{{.State.Status}}' "$name"), $ip reserved for '$(reservation "$n" "$ip")'"; return 1; }
		sleep 0.5
	done
	[[ -z "$(attachments_of "$n" "$id")" ]] || { echo "attachment index left for $id"; return 1; }
	ip -n "$(host_ns "$n")" -o link show master overlay0 | grep -q . && { echo "a host veth is still on overlay0: $(ip -n "$(host_ns "$n")" -o link show master overlay0)"; return 1; }
	echo "exited, $ip released, no veth on overlay0"
}

# check_inspect: podman parsed the conflist (name, driver, plugin chain).
check_inspect() {
	local out
	out="$(pm 1 network inspect overlay)" || { echo "$out"; return 1; }
	jq -er '.[0] | "name \(.name), driver \(.driver)"' <<<"$out"
}

# --- teardown ----------------------------------------------------------------

podman_down() {
	local state="$OVL_STATE/state" kind a b
	[[ -f "$state" ]] || return 0
	while read -r kind a b; do
		[[ "$kind" == pcontainer ]] || continue
		pm "$a" rm -f -t 0 "$b" >/dev/null 2>&1 || true
	done <"$state"
	# Anything podman still runs (conmon) for these roots.
	while read -r kind a b; do
		[[ "$kind" == podman ]] || continue
		pm "$a" rm -a -f -t 0 >/dev/null 2>&1 || true
		# vfs layers / overlay mounts under the root.
		pm "$a" system reset -f >/dev/null 2>&1 </dev/null || true
	done <"$state"
	# Each host's parent cgroup and what podman leaves in it (conmon's
	# cgroup, and the cgroup of a container that exited by itself): runc
	# removes only the others. Deepest first; rmdir refuses a busy one.
	local cg
	for cg in /sys/fs/cgroup/*/"$OVL_PREFIX"-h*/*/ /sys/fs/cgroup/*/"$OVL_PREFIX"-h*/ /sys/fs/cgroup/"$OVL_PREFIX"-h*/; do
		[[ -d "$cg" ]] || continue
		rmdir "$cg" 2>/dev/null || echo "  cgroup $cg not removable: $(find "$cg" -mindepth 1 -maxdepth 1 -type d | tr '\n' ' ')"
	done
	while read -r kind a _; do
		[[ "$kind" == cninetns ]] || continue
		if ip netns list | awk '{print $1}' | grep -qx "$a"; then
			ip netns del "$a" 2>/dev/null || true
			echo "  podman left netns $a; removed it"
		fi
	done <"$state"
	local f
	# libcni's result cache (podman 4.3 cannot move it from /var/lib/cni):
	# DEL removes an entry; drop any left for this run's networks.
	for f in /var/lib/cni/results/overlay-*; do
		[[ -f "$f" ]] || continue
		jq -e --arg d "$OVL_STATE/" '.config | @base64d | fromjson | .plugins[0].runDir | startswith($d)' \
			"$f" >/dev/null 2>&1 || continue
		rm -f "$f"
		echo "  removed libcni cache entry $f (its DEL never ran)"
	done
	# podman inspect cannot name a sandbox it cannot open (PODMAN_NSENTER=
	# ipnetns), so also remove podman-style names (netns-*, cni-*) that were
	# not there before and whose file was made during this run.
	for f in /run/netns/netns-* /run/netns/cni-*; do
		[[ -e "$f" ]] || continue
		grep -qx "$(basename "$f")" <<<"$NETNS_BEFORE" && continue
		(($(stat -c %Y "$f") >= START_EPOCH)) || continue
		ip netns del "$(basename "$f")" 2>/dev/null || true
		echo "  podman left netns $(basename "$f") (made during this run); removed it"
	done
}

on_exit() {
	local rc=$? after
	trap - EXIT
	((STEP_OPEN == 0)) || echo "FAILED"
	((rc != 130)) || echo "interrupted"
	[[ -n "${OVL_STATE:-}" ]] || exit "$rc"
	if ((rc != 0 || ${#PROBLEMS[@]} > 0)); then
		local keep
		keep="$(mktemp -d /tmp/ovl-podman-logs.XXXXXX)"
		(cd "$OVL_STATE" && find . -name '*.log' -exec cp --parents {} "$keep" \;)
		echo "  logs saved in $keep"
	fi
	if [[ "$KEEP" == 1 ]]; then
		echo "kept: state $OVL_STATE; remove with podman rm and hack/cluster.sh down $OVL_STATE"
		exit "$rc"
	fi
	podman_down
	cluster_down "$OVL_STATE" || echo "teardown incomplete: run hack/cluster.sh down $OVL_STATE" >&2
	# Other clusters or tests may come and go meanwhile, so compare only
	# what this run could have made: our prefix and podman's netns-*/cni-* names.
	after="$(ip netns list 2>/dev/null | awk '{print $1}' | sort)"
	left="$(comm -13 <(echo "$NETNS_BEFORE") <(echo "$after") | grep -E "^($OVL_PREFIX-|cni-|netns-)" || true)"
	if [[ -n "$left" ]]; then
		echo "  netns left behind (not in ip netns list before): $(tr '\n' ' ' <<<"$left")"
		PROBLEMS+=("netns left behind")
		rc=1
	else
		echo "  cleanup: no $OVL_PREFIX-* or new podman netns left; ip netns list as before for ours"
	fi
	echo
	if ((rc == 0 && ${#PROBLEMS[@]} == 0)); then
		echo "RESULT: PASS (${#PASSED[@]} checks)"
	else
		printf '  problem: %s\n' "${PROBLEMS[@]}"
		echo "RESULT: FAIL"
		rc=1
	fi
	exit "$rc"
}

# --- main ----------------------------------------------------------------------

trap on_exit EXIT
trap 'exit 130' INT TERM

cluster_init
echo "overlay podman check: $HOSTS hosts, network $OVL_NETWORK $CIDR, podman CNI backend"
echo "  (namespaces $OVL_PREFIX-*, state $OVL_STATE)"
CUR_STEP=setup
install_podman
echo "  $(podman --version), $(dpkg-query -W -f='conmon ${Version}' conmon 2>/dev/null), $("$OCI_RUNTIME" --version | head -n 1), podman via $PODMAN_NSENTER"

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

CUR_STEP="podman config + busybox rootfs"
step "$CUR_STEP"
make_rootfs
for ((n = 1; n <= HOSTS; n++)); do podman_setup "$n"; done
nets="$(pm 1 network ls --format '{{.Name}} {{.Driver}}' 2>&1)" || die "podman network ls: $nets"
grep -q '^overlay ' <<<"$nets" || die "podman does not list network overlay: $nets"
done_ok "podman network ls: $(tr '\n' ' ' <<<"$nets")"

check "podman network inspect overlay" check_inspect

start_container 1 c1
start_container 2 c2
check "c1 (h1): address in h1's subnet" check_ip 1 c1
check "c2 (h2): address in h2's subnet" check_ip 2 c2
check "ping h1/c1 -> h2/c2 ${CIP[c2]}" check_ping 1 c1 "${CIP[c2]}"
check "ping h2/c2 -> h1/c1 ${CIP[c1]}" check_ping 2 c2 "${CIP[c1]}"
check "podman rm -f c1 (CNI DEL): veth and address freed" check_rm 1 c1

C3_MAC=02:42:0a:f4:00:77
RUN_OPTS="--mac-address $C3_MAC" start_container 1 c3
check "c3 (h1): address in h1's subnet" check_ip 1 c3
check "c3: --mac-address set by the chained tuning plugin" check_mac 1 c3 "$C3_MAC"
check "c3: firewall plugin's rules for ${CIP[c3]}" check_fw 1 "${CIP[c3]}" 2
check "ping h2/c2 -> h1/c3 ${CIP[c3]}" check_ping 2 c2 "${CIP[c3]}"
check "podman rm -f c3 (CNI DEL): veth and address freed" check_rm 1 c3
check "podman rm -f c3: firewall rules for ${CIP[c3]} gone" check_fw 1 "${CIP[c3]}" 0

# A container that ends by itself: DEL comes from conmon's exit command.
start_container 1 e1 /bin/busybox sleep 2
check "e1 exits: conmon's cleanup ran CNI DEL" check_exit 1 e1
pm 1 rm -f e1 >/dev/null 2>&1 || true

# portmap, chained after overlay: -p 18080:8080 on h1 (underlay $(host_ip 1)).
RUN_OPTS="-p 18080:8080" start_container 1 w1 /bin/sh -c \
	'mkdir -p /www && echo hello-from-w1 >/www/index.html && exec httpd -f -p 8080 -h /www'
wait_for 10 "httpd in w1" http_get 1 w1 127.0.0.1 8080 || true
W1_ID="$(pm 1 inspect -f '{{.Id}}' w1)"
check "portmap: h2 host -> $(host_ip 1):18080" \
	expect_body hello-from-w1 ip netns exec "$(host_ns 2)" curl -sS -m 3 "http://$(host_ip 1):18080/"
check "portmap: h2/c2 -> $(host_ip 1):18080" expect_body hello-from-w1 http_get 2 c2 "$(host_ip 1)" 18080
check "portmap: h1 host -> 127.0.0.1:18080" \
	expect_body hello-from-w1 ip netns exec "$(host_ns 1)" curl -sS -m 3 http://127.0.0.1:18080/
# Hairpin: w1 to its own host port. DNAT sends the frame back out the bridge
# port it came in on; with br_netfilter active (bridge-nf-call-iptables=1,
# the default once the module is loaded, as on any Docker/Kubernetes host)
# the bridge drops it unless the port has hairpin mode on.
check "portmap hairpin: w1 -> its own $(host_ip 1):18080" \
	expect_body hello-from-w1 http_get 1 w1 "$(host_ip 1)" 18080
check "podman rm -f w1 (CNI DEL): veth and address freed" check_rm 1 w1
check "podman rm -f w1: portmap removed its nat rules" check_portmap_gone 1 "$W1_ID"
check "podman rm -f c2 (CNI DEL): veth and address freed" check_rm 2 c2
