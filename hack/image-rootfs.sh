#!/usr/bin/env bash
# image-rootfs.sh BIN_DIR ROOTFS stages the root filesystem of overlay's
# image (Containerfile: FROM scratch, COPY rootfs/ /):
#
#   /usr/local/bin/overlayd, overlayctl     static Go binaries (make build)
#   /opt/overlay/cni/bin/*                  the CNI plugins `overlayctl cni install` copies to the host
#   /etc/overlay/cni/10-overlay.conflist    the default conflist it installs
#   /usr/sbin/iptables (iptables-nft)       overlayd's FORWARD and masquerade rules go through
#                                           go-iptables, which runs the iptables binary; it is
#                                           the one dynamically linked program, so its libraries
#                                           and xtables extensions come along from this machine's
#                                           Debian iptables package
#
# Nothing else: no shell, no package manager. ROOTFS is replaced.
set -euo pipefail

BIN=${1:?usage: image-rootfs.sh BIN_DIR ROOTFS}
ROOTFS=${2:?usage: image-rootfs.sh BIN_DIR ROOTFS}
cd "$(dirname "$0")/.."

DAEMONS=(overlayd overlayctl)
PLUGINS=(overlay overlay-ipam portmap bandwidth firewall tuning loopback)
XTABLES=/usr/sbin/xtables-nft-multi

rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"/{usr/local/bin,usr/sbin,opt/overlay/cni/bin,etc/overlay/cni,run,tmp,var/lib}
chmod 1777 "$ROOTFS/tmp"

# Only static binaries go in: a dynamically linked one would look for a
# libc the image does not have and fail only when run.
static_copy() {
	local src=$1 dst=$2
	if ldd "$src" >/dev/null 2>&1; then
		echo "image-rootfs: $src is not statically linked; build with CGO_ENABLED=0 (make build does)" >&2
		exit 1
	fi
	install -m 0755 "$src" "$dst"
}
for b in "${DAEMONS[@]}"; do static_copy "$BIN/$b" "$ROOTFS/usr/local/bin/$b"; done
for p in "${PLUGINS[@]}"; do static_copy "$BIN/$p" "$ROOTFS/opt/overlay/cni/bin/$p"; done
install -m 0644 conf/10-overlay.conflist "$ROOTFS/etc/overlay/cni/10-overlay.conflist"

# iptables-nft: the multi-call binary under the names go-iptables runs.
if [[ ! -x $XTABLES ]]; then
	echo "image-rootfs: $XTABLES is missing; install Debian's iptables package (hack/deps.sh does)" >&2
	exit 1
fi
install -m 0755 "$XTABLES" "$ROOTFS/usr/sbin/xtables-nft-multi"
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
	ln -s xtables-nft-multi "$ROOTFS/usr/sbin/$name"
done
XTLIBDIR=$(dirname "$(ldd "$XTABLES" | awk '/libxtables/ {print $3}')")
XTEXT=/usr/lib/$(basename "$XTLIBDIR")/xtables
mkdir -p "$ROOTFS$XTEXT"
cp -L "$XTEXT"/*.so "$ROOTFS$XTEXT/"
# Every library the binary and its extensions load, at the path the loader
# resolved it to here (the loader itself included).
{ ldd "$XTABLES"; for so in "$XTEXT"/*.so; do ldd "$so"; done; } |
	awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
	while read -r lib; do
		mkdir -p "$ROOTFS$(dirname "$lib")"
		cp -L "$lib" "$ROOTFS$lib"
	done
# getprotobyname for rules with -p.
install -m 0644 /etc/protocols "$ROOTFS/etc/protocols"
echo "image-rootfs: staged $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"
