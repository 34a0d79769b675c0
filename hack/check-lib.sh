#!/usr/bin/env bash
# check-lib.sh: what the runtime checks (podman-check.sh,
# containerd-check.sh) share: a step/ok/FAILED report and helpers that read a
# simulated host's host file and IPAM store. Sourced after cluster.sh, whose
# host_dir, host_file, OVL_NETWORK and OVL_STATE it uses.

PROBLEMS=()
PASSED=()
STEP_OPEN=0

step() {
	printf '  %-*s ' "${STEP_WIDTH:-60}" "$1"
	STEP_OPEN=1
}
done_ok() {
	echo "ok${1:+ ($1)}"
	STEP_OPEN=0
	PASSED+=("$CUR_STEP")
}
# check DESCRIPTION CMD... runs CMD; records a problem when it fails.
check() {
	local what="$1" out
	shift
	CUR_STEP="$what"
	step "$what"
	if out="$("$@" 2>&1)"; then
		done_ok "$out"
	else
		echo "FAILED"
		STEP_OPEN=0
		# shellcheck disable=SC2001 # indent every line
		[[ -z "$out" ]] || sed 's/^/    | /' <<<"$out" | tail -n 15
		PROBLEMS+=("$what")
	fi
}
die() {
	((STEP_OPEN == 0)) || echo "FAILED"
	STEP_OPEN=0
	echo "  -> $*"
	PROBLEMS+=("$*")
	exit 1
}

host_subnet() { jq -r .subnet "$(host_file "$1")"; }
# attachments_of N ID lists host N's IPAM index files naming container ID.
attachments_of() {
	grep -lF "\"$2\"" "$(host_dir "$1")/cni/$OVL_NETWORK/attachments/"* 2>/dev/null || true
}
# reservation N IP prints the containerID host N's IPAM store has IP
# reserved for (DATADIR/NETWORK/ips/IP is the reservation), or nothing.
reservation() {
	local f
	f="$(host_dir "$1")/cni/$OVL_NETWORK/ips/$2"
	[[ -f "$f" ]] && jq -r .containerID "$f"
	return 0
}
# ip_in_subnet IP CIDR
ip_in_subnet() {
	python3 -c 'import ipaddress,sys; sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null ||
		awk -v ip="$1" -v net="$2" 'BEGIN{split(net,a,"/"); split(a[1],n,"."); split(ip,i,"."); p=a[2];
		 x=((n[1]*256+n[2])*256+n[3])*256+n[4]; y=((i[1]*256+i[2])*256+i[3])*256+i[4]; m=2^(32-p);
		 exit (int(x/m)==int(y/m)) ? 0 : 1}'
}
# make_rootfs builds a busybox rootfs directory (static busybox, applets as
# symlinks, a minimal /etc).
make_rootfs() {
	ROOTFS="$OVL_STATE/rootfs"
	mkdir -p "$ROOTFS"/{bin,etc,proc,sys,dev,tmp,run,root}
	cp /bin/busybox "$ROOTFS/bin/busybox"
	local a
	for a in $("$ROOTFS/bin/busybox" --list); do
		[[ "$a" == busybox ]] || ln -sf busybox "$ROOTFS/bin/$a"
	done
	echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
	echo 'root:x:0:' >"$ROOTFS/etc/group"
}
