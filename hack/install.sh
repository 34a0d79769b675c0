#!/usr/bin/env bash
# install.sh install|uninstall: `make install` and `make uninstall` for a
# plain host (systemd, no Kubernetes). The variables come from the Makefile,
# which documents them: BIN PREFIX DESTDIR SYSCONFDIR SYSTEMD_UNIT_DIR
# CNI_BIN_DIR CNI_NET_DIR CONFLIST STATE_DIR FORCE.
#
# install, in this order:
#   1. the CNI part, first because it is the step that refuses (a foreign
#      conflist of our name, another network's config sorting first):
#      `overlayctl cni install`, which keeps its own ledger of what it wrote,
#      replaced and created ($STATE_DIR/cni-install.json);
#   2. overlayd and overlayctl into PREFIX/bin, the unit into
#      SYSTEMD_UNIT_DIR with its paths set, the env file into
#      SYSCONFDIR/default/overlayd only when there is none;
#   3. the manifest, PREFIX/share/overlay/install-manifest: every file step
#      2 wrote with its sha256, every directory the run created (the CNI
#      step's too), in creation order, and the ledger of step 1.
# A failure part-way undoes the run (the EXIT trap): files it wrote are
# removed or put back as they were, directories it created are removed.
# Running it again updates what it installed.
#
# uninstall undoes that in reverse: `overlayctl cni uninstall` with the
# ledger, then each manifest file still as written (a changed one is kept
# and named), the directories newest first when empty, the manifest last.
#
# The manifest holds paths without DESTDIR, one record a line, fields
# separated by tabs:
#   dir       PATH
#   file      SHA256 PATH            written by install; removed by uninstall
#   replaced  SHA256 PATH BACKUP     FORCE=1 replaced a foreign PATH, kept at
#                                    BACKUP; uninstall puts it back
#   cni-ledger PATH
#   manifest  PATH
set -euo pipefail

MODE=${1:?usage: install.sh install|uninstall}
: "${BIN:?} ${PREFIX:?} ${SYSCONFDIR:?} ${SYSTEMD_UNIT_DIR:?} ${CNI_BIN_DIR:?} ${CNI_NET_DIR:?} ${CONFLIST:?} ${STATE_DIR:?}"
DESTDIR=${DESTDIR:-}
FORCE=${FORCE:-0}

PLUGINS=(overlay overlay-ipam portmap bandwidth firewall tuning loopback)
MANIFEST_HEADER='# overlay install manifest v1: written by make install (hack/install.sh), read by make uninstall; paths are without DESTDIR'

say() { echo "$MODE: $*"; }
die() {
	echo "$MODE: $*" >&2
	exit 1
}

# BIN and DESTDIR may be relative to where make ran; conf/ is the repo's.
[[ $BIN == /* ]] || BIN=$PWD/$BIN
[[ -z $DESTDIR || $DESTDIR == /* ]] || DESTDIR=$PWD/$DESTDIR
DESTDIR=${DESTDIR%/}
cd "$(dirname "$0")/.."

# Paths are absolute, without a trailing slash, and hold no tab or newline
# (the manifest's separators).
for v in PREFIX SYSCONFDIR SYSTEMD_UNIT_DIR CNI_BIN_DIR CNI_NET_DIR STATE_DIR; do
	p=${!v}
	[[ $p == /* ]] || die "$v=$p: must be an absolute path"
	[[ $p != *$'\t'* && $p != *$'\n'* ]] || die "$v: a tab or newline in a path is not supported"
	[[ $p == / ]] || printf -v "$v" '%s' "${p%/}"
done
[[ $DESTDIR != *$'\t'* && $DESTDIR != *$'\n'* ]] || die "DESTDIR: a tab or newline in a path is not supported"
[[ $FORCE == 0 || $FORCE == 1 ]] || die "FORCE=$FORCE: use FORCE=1 or FORCE=0"
[[ $CONFLIST != */* && -f conf/$CONFLIST && $CONFLIST == *.conflist ]] ||
	die "CONFLIST=$CONFLIST: name one of conf/*.conflist ($(cd conf && echo *.conflist))"

MANIFEST=$PREFIX/share/overlay/install-manifest
LEDGER=$STATE_DIR/cni-install.json
ENV_FILE=$SYSCONFDIR/default/overlayd
UNIT=$SYSTEMD_UNIT_DIR/overlayd.service
BACKUP_DIR=$PREFIX/share/overlay/backup

sha_of() {
	local sum
	sum=$(sha256sum <"$1")
	echo "${sum%% *}"
}

# The previous manifest, if any: M_FILES in order, with M_KIND, M_SHA and
# M_BACKUP per path; M_DIRS in creation order.
M_FILES=()
M_DIRS=()
M_LEDGER=
declare -A M_KIND=() M_SHA=() M_BACKUP=()
load_manifest() {
	local line kind a b c first=1
	while IFS= read -r line || [[ -n $line ]]; do
		if ((first)); then
			[[ $line == "$MANIFEST_HEADER" ]] || die "$DESTDIR$MANIFEST is not a manifest this version reads (first line: $line); use the make install that wrote it, or remove what it lists by hand"
			first=0
			continue
		fi
		IFS=$'\t' read -r kind a b c <<<"$line"
		case $kind in
		dir) M_DIRS+=("$a") ;;
		file | replaced)
			[[ -v M_KIND[$b] ]] || M_FILES+=("$b")
			M_KIND[$b]=$kind M_SHA[$b]=$a M_BACKUP[$b]=$c
			;;
		cni-ledger) M_LEDGER=$a ;;
		manifest | '') ;;
		*) die "$DESTDIR$MANIFEST: unknown record '$kind'" ;;
		esac
	done <"$DESTDIR$MANIFEST"
}

write_manifest() {
	local tmp=$DESTDIR$MANIFEST.tmp-$$ f d
	journal new "$tmp"
	{
		echo "$MANIFEST_HEADER"
		for d in "${M_DIRS[@]}"; do printf 'dir\t%s\n' "$d"; done
		[[ -z $M_LEDGER ]] || printf 'cni-ledger\t%s\n' "$M_LEDGER"
		for f in "${M_FILES[@]}"; do
			if [[ ${M_KIND[$f]} == replaced ]]; then
				printf 'replaced\t%s\t%s\t%s\n' "${M_SHA[$f]}" "$f" "${M_BACKUP[$f]}"
			else
				printf 'file\t%s\t%s\n' "${M_SHA[$f]}" "$f"
			fi
		done
		printf 'manifest\t%s\n' "$MANIFEST"
	} >"$tmp"
	chmod 0644 "$tmp"
	mv -fT "$tmp" "$DESTDIR$MANIFEST"
}

add_dir() {
	local d
	for d in "${M_DIRS[@]}"; do [[ $d != "$1" ]] || return 0; done
	M_DIRS+=("$1")
}

# --- install ------------------------------------------------------------------

# The undo journal of this run, replayed backwards by the EXIT trap when
# the run fails: "new PATH" (remove), "saved PATH COPY" (put back), "dir
# PATH" (remove if empty), "newin DIR" (remove files not there before).
JOURNAL=()
UNDO=
COMMITTED=0
# Set once the run may have written something (a refusal writes nothing).
TOUCHED=0
declare -A BEFORE_IN=()
journal() { JOURNAL+=("$(printf '%s\t' "$@")"); }

# save PATH: keep a copy of PATH (if there is one) to put back on failure.
save() {
	if [[ -e $1 || -L $1 ]]; then
		local copy
		copy=$UNDO/saved.${#JOURNAL[@]}
		cp -a "$1" "$copy"
		journal saved "$1" "$copy"
	else
		journal new "$1"
	fi
}

undo() {
	local i kind a b f
	for ((i = ${#JOURNAL[@]} - 1; i >= 0; i--)); do
		IFS=$'\t' read -r kind a b <<<"${JOURNAL[i]}"
		case $kind in
		new) rm -f "$a" ;;
		saved)
			if ! cmp -s "$b" "$a" || [[ $(stat -c %a "$b") != $(stat -c %a "$a" 2>/dev/null) ]]; then
				cp -a "$b" "$a.undo-$$" && mv -fT "$a.undo-$$" "$a"
			fi
			;;
		dir) [[ ! -d $a ]] || rmdir "$a" 2>/dev/null || true ;;
		newin)
			for f in "$a"/* "$a"/.[!.]*; do
				[[ -e $f && ! -v BEFORE_IN[$f] ]] || continue
				rm -f "$f"
			done
			;;
		esac
	done
}

on_exit() {
	local rc=$?
	set +e
	if ((!COMMITTED && rc != 0)); then
		undo
		((!TOUCHED)) || echo "$MODE: failed; undid this run's changes (what was there before it is as it was)" >&2
	fi
	[[ -z $UNDO ]] || rm -rf "$UNDO"
	exit "$rc"
}

# ensure_dir DIR: creates the missing levels of DESTDIR/DIR one at a time,
# so each directory the run created is known.
ensure_dir() {
	local d=$1 missing=()
	while [[ $d != / && ! -e $DESTDIR$d && ! -L $DESTDIR$d ]]; do
		missing=("$d" "${missing[@]}")
		d=$(dirname "$d")
	done
	[[ -d $DESTDIR$d ]] || die "$DESTDIR$d is not a directory; $1 cannot be created under it"
	for d in "${missing[@]}"; do
		journal dir "$DESTDIR$d"
		mkdir -m 0755 "$DESTDIR$d"
		add_dir "$d"
	done
}

# missing_dirs DIR...: the levels of DESTDIR/DIR that do not exist,
# parents first.
missing_dirs() {
	local top d chain
	for top in "$@"; do
		chain=()
		d=$top
		while [[ $d != / && ! -e $DESTDIR$d ]]; do
			chain=("$d" "${chain[@]}")
			d=$(dirname "$d")
		done
		((${#chain[@]} == 0)) || printf '%s\n' "${chain[@]}"
	done | awk 'length($0) && !seen[$0]++'
}

# render_unit OUT: conf/overlayd.service with ExecStart and
# EnvironmentFile pointing at PREFIX and SYSCONFDIR.
render_unit() {
	local line exec=0 envf=0
	while IFS= read -r line || [[ -n $line ]]; do
		case $line in
		ExecStart=/usr/local/bin/overlayd*)
			line=ExecStart=$PREFIX/bin/overlayd${line#ExecStart=/usr/local/bin/overlayd}
			exec=1
			;;
		EnvironmentFile=/etc/default/overlayd)
			line=EnvironmentFile=$ENV_FILE
			envf=1
			;;
		esac
		printf '%s\n' "$line"
	done <conf/overlayd.service >"$1"
	((exec && envf)) || die "conf/overlayd.service has no ExecStart=/usr/local/bin/overlayd or EnvironmentFile=/etc/default/overlayd line to rewrite"
}

# render_env OUT: conf/overlayd.env with OVERLAY_STATE_DIR=STATE_DIR.
render_env() {
	local line found=0
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line == OVERLAY_STATE_DIR=* ]]; then
			line=OVERLAY_STATE_DIR=$STATE_DIR
			found=1
		fi
		printf '%s\n' "$line"
	done <conf/overlayd.env >"$1"
	((found)) || die "conf/overlayd.env has no OVERLAY_STATE_DIR= line to set"
}

# plan_file SRC PATH: what installing SRC at DESTDIR/PATH means; sets
# PLAN[PATH] (write, update, same, identical, overwrite or replace) or adds
# a refusal.
declare -A PLAN=() SRC=() FMODE=()
REFUSALS=()
plan_file() {
	local src=$1 path=$2 dst=$DESTDIR$2 cur
	SRC[$path]=$src
	if [[ ! -e $dst && ! -L $dst ]]; then
		PLAN[$path]='write'
		return
	fi
	if [[ ! -f $dst || -L $dst ]]; then
		REFUSALS+=("$dst exists and is not a regular file; move it away")
		return
	fi
	cur=$(sha_of "$dst")
	if [[ -v M_KIND[$path] && ${M_SHA[$path]} == "$cur" ]]; then
		if cmp -s "$src" "$dst" && [[ $(stat -c %a "$dst") == "${FMODE[$path]#0}" ]]; then
			PLAN[$path]=same
		else
			PLAN[$path]=update
		fi
	elif cmp -s "$src" "$dst"; then
		# Identical already: ours again if we wrote it, left alone if not.
		PLAN[$path]=identical
	elif [[ -v M_KIND[$path] ]] && ((FORCE)); then
		PLAN[$path]=overwrite
	elif [[ -v M_KIND[$path] ]]; then
		REFUSALS+=("$dst was changed since make install wrote it; put local changes in a drop-in (systemctl edit overlayd) or $DESTDIR$ENV_FILE, or run make install FORCE=1 to overwrite it")
	elif ((FORCE)); then
		PLAN[$path]=replace
	else
		REFUSALS+=("$dst exists and was not installed by make install (a copy installed by hand?); move it away, or run make install FORCE=1 to replace it (it is kept in $DESTDIR$BACKUP_DIR and make uninstall puts it back)")
	fi
}

# put SRC PATH MODE: writes DESTDIR/PATH atomically (a running overlayd
# keeps its old binary; systemd never reads half a unit).
put() {
	local src=$1 dst=$DESTDIR$2 mode=$3 tmp
	tmp=$(dirname "$dst")/.$(basename "$dst").install-$$
	save "$dst"
	journal new "$tmp"
	install -m "$mode" "$src" "$tmp"
	mv -fT "$tmp" "$dst"
}

# install_file PATH: carries out PLAN[PATH] and records it.
install_file() {
	local path=$1 backup
	case ${PLAN[$path]} in
	same) say "unchanged $DESTDIR$path" ;;
	identical)
		if [[ -v M_KIND[$path] ]]; then
			M_SHA[$path]=$(sha_of "$DESTDIR$path")
			say "unchanged $DESTDIR$path"
		else
			say "kept $DESTDIR$path (already identical; not installed by make install, so make uninstall leaves it)"
		fi
		;;
	write | update | overwrite | replace)
		ensure_dir "$(dirname "$path")"
		if [[ ${PLAN[$path]} == replace ]]; then
			if [[ ${M_KIND[$path]:-} == replaced ]]; then
				backup=${M_BACKUP[$path]}
			else
				backup=$BACKUP_DIR/$(tr / _ <<<"${path#/}")
				ensure_dir "$BACKUP_DIR"
				save "$DESTDIR$backup"
				cp -a "$DESTDIR$path" "$DESTDIR$backup"
			fi
			[[ -v M_KIND[$path] ]] || M_FILES+=("$path")
			M_KIND[$path]=replaced M_BACKUP[$path]=$backup
		elif [[ ! -v M_KIND[$path] ]]; then
			M_FILES+=("$path")
			M_KIND[$path]='file'
		fi
		put "${SRC[$path]}" "$path" "${FMODE[$path]}"
		M_SHA[$path]=$(sha_of "$DESTDIR$path")
		case ${PLAN[$path]} in
		write) say "wrote $DESTDIR$path" ;;
		update) say "updated $DESTDIR$path" ;;
		overwrite) say "overwrote $DESTDIR$path (it was changed since make install wrote it; FORCE=1)" ;;
		replace) say "replaced $DESTDIR$path (the file it replaced is kept at $DESTDIR${M_BACKUP[$path]}; make uninstall puts it back)" ;;
		esac
		;;
	esac
}

# cni_install: step 1, with what it may write saved for the undo.
cni_install() {
	local args=() p f out rc=0 dir
	local candidates=("$DESTDIR$LEDGER")
	# A file already identical to ours is not written (cni install leaves
	# it unchanged), so it needs no copy.
	cmp -s "conf/$CONFLIST" "$DESTDIR$CNI_NET_DIR/$CONFLIST" || candidates+=("$DESTDIR$CNI_NET_DIR/$CONFLIST")
	for p in "${PLUGINS[@]}"; do
		[[ -f $BIN/$p ]] || die "$BIN/$p is missing; run make build"
		cmp -s "$BIN/$p" "$DESTDIR$CNI_BIN_DIR/$p" || candidates+=("$DESTDIR$CNI_BIN_DIR/$p")
	done
	mapfile -t CNI_NEW_DIRS < <(missing_dirs "$STATE_DIR" "$CNI_BIN_DIR" "$CNI_NET_DIR" "$STATE_DIR/cni-backup")
	for dir in "${CNI_NEW_DIRS[@]}"; do journal dir "$DESTDIR$dir"; done
	# With FORCE it backs up what it replaces beside the ledger.
	for f in "$DESTDIR$STATE_DIR/cni-backup"/*; do
		[[ -e $f ]] || continue
		BEFORE_IN[$f]=1
		candidates+=("$f")
	done
	journal newin "$DESTDIR$STATE_DIR/cni-backup"
	for f in "${candidates[@]}"; do save "$f"; done

	args=(cni install --from "$BIN" --plugins "$(
		IFS=,
		echo "${PLUGINS[*]}"
	)" --conflist "conf/$CONFLIST" --bin-dir "$DESTDIR$CNI_BIN_DIR" --net-dir "$DESTDIR$CNI_NET_DIR" --ledger "$DESTDIR$LEDGER")
	((!FORCE)) || args+=(--force)
	echo "$MODE: overlayctl ${args[*]}"
	TOUCHED=1
	out=$("$BIN/overlayctl" "${args[@]}" 2>&1) || rc=$?
	[[ -z $out ]] || printf '%s\n' "$out" | sed 's/^/  /'
	if ((rc != 0)); then
		[[ $out == *"nothing was installed"* ]] || die "the CNI step failed (above)"
		# A refusal is found before anything is written.
		TOUCHED=0
		[[ $out == *--force* ]] || die "the CNI step refused (above); nothing was installed"
		die "the CNI step refused (above); nothing was installed. Move the files it names away, or run make install FORCE=1 to replace them (each is backed up; make uninstall puts it back) and to install even when another network's config sorts first"
	fi
	for dir in "${CNI_NEW_DIRS[@]}"; do
		[[ ! -d $DESTDIR$dir ]] || add_dir "$dir"
	done
	M_LEDGER=$LEDGER
}

do_install() {
	local b
	# The staging root is the packager's, not part of the install.
	[[ -z $DESTDIR ]] || mkdir -p "$DESTDIR"
	for b in overlayd overlayctl; do
		[[ -x $BIN/$b ]] || die "$BIN/$b is missing; run make build"
	done
	[[ ! -f $DESTDIR$MANIFEST ]] || load_manifest
	UNDO=$(mktemp -d "${TMPDIR:-/tmp}/overlay-install.XXXXXX")
	trap on_exit EXIT
	trap 'exit 130' INT TERM HUP

	# Everything that can refuse is checked before anything is written.
	render_unit "$UNDO/overlayd.service"
	render_env "$UNDO/overlayd.env"
	FMODE[$PREFIX/bin/overlayd]=0755 FMODE[$PREFIX/bin/overlayctl]=0755 FMODE[$UNIT]=0644 FMODE[$ENV_FILE]=0644
	plan_file "$BIN/overlayd" "$PREFIX/bin/overlayd"
	plan_file "$BIN/overlayctl" "$PREFIX/bin/overlayctl"
	plan_file "$UNDO/overlayd.service" "$UNIT"
	if ((${#REFUSALS[@]} > 0)); then
		printf '%s: %s\n' "$MODE" "${REFUSALS[@]}" >&2
		die "nothing was installed"
	fi

	cni_install
	install_file "$PREFIX/bin/overlayd"
	install_file "$PREFIX/bin/overlayctl"
	install_file "$UNIT"
	# The env file is the admin's once written: never overwritten, even
	# when conf/overlayd.env changes.
	if [[ -e $DESTDIR$ENV_FILE || -L $DESTDIR$ENV_FILE ]]; then
		say "kept $DESTDIR$ENV_FILE (an existing env file is never overwritten; compare it with conf/overlayd.env)"
	else
		PLAN[$ENV_FILE]=write SRC[$ENV_FILE]=$UNDO/overlayd.env
		install_file "$ENV_FILE"
	fi
	ensure_dir "$(dirname "$MANIFEST")"
	save "$DESTDIR$MANIFEST"
	write_manifest
	COMMITTED=1
	say "recorded what was installed in $DESTDIR$MANIFEST (make uninstall reads it)"

	if [[ -n $DESTDIR ]]; then
		say "staged under DESTDIR=$DESTDIR; nothing was started"
	elif command -v systemctl >/dev/null; then
		cat <<EOF
Next steps:
  1. edit $ENV_FILE: etcd endpoints and TLS, the network to join
  2. systemctl daemon-reload
  3. systemctl enable --now overlayd        (already running: systemctl restart overlayd)
  4. once per cluster, if not done yet:
       $PREFIX/bin/overlayctl --etcd-endpoints URLS network set default --cidr 10.244.0.0/16
     then: $PREFIX/bin/overlayctl status
EOF
	fi
}

# --- uninstall ----------------------------------------------------------------

do_uninstall() {
	local i path kind cur ctl kept=() dir out rc=0
	if [[ -z $DESTDIR ]] && command -v systemctl >/dev/null && systemctl is-active --quiet overlayd 2>/dev/null; then
		die "overlayd is running. First stop it and remove its datapath (the VXLAN device, bridge and routes; running containers lose the overlay):
  systemctl disable --now overlayd
  $PREFIX/bin/overlayctl teardown
then run make uninstall again"
	fi
	if [[ ! -f $DESTDIR$MANIFEST ]]; then
		say "nothing to uninstall: no manifest at $DESTDIR$MANIFEST (installed with another PREFIX? make uninstall PREFIX=...)"
		if [[ -f $DESTDIR$LEDGER ]]; then
			say "a CNI install ledger is at $DESTDIR$LEDGER (from make install with another PREFIX, or the DaemonSet); overlayctl cni uninstall --ledger $DESTDIR$LEDGER undoes it"
		fi
		return 0
	fi
	load_manifest

	if [[ -n $M_LEDGER && -f $DESTDIR$M_LEDGER ]]; then
		ctl=$DESTDIR$PREFIX/bin/overlayctl
		[[ -x $ctl ]] || ctl=$BIN/overlayctl
		[[ -x $ctl ]] || die "$DESTDIR$PREFIX/bin/overlayctl is gone and there is no $BIN/overlayctl: run make build, then make uninstall again"
		echo "$MODE: overlayctl cni uninstall --ledger $DESTDIR$M_LEDGER"
		out=$("$ctl" cni uninstall --ledger "$DESTDIR$M_LEDGER" 2>&1) || rc=$?
		[[ -z $out ]] || printf '%s\n' "$out" | sed 's/^/  /'
		((rc == 0)) || die "the CNI step failed (above); nothing else was removed; fix that and run make uninstall again"
	fi

	for ((i = ${#M_FILES[@]} - 1; i >= 0; i--)); do
		path=${M_FILES[i]}
		kind=${M_KIND[$path]}
		if [[ ! -e $DESTDIR$path ]]; then
			say "gone $DESTDIR$path (already removed)"
			[[ $kind != replaced ]] || kept+=("the file FORCE=1 had replaced at $DESTDIR$path is at $DESTDIR${M_BACKUP[$path]}")
			continue
		fi
		cur=$(sha_of "$DESTDIR$path")
		if [[ $cur != "${M_SHA[$path]}" ]]; then
			if [[ $kind == replaced ]]; then
				kept+=("$DESTDIR$path was changed since make install wrote it; the file it replaced is at $DESTDIR${M_BACKUP[$path]}: mv -f $DESTDIR${M_BACKUP[$path]} $DESTDIR$path")
			else
				kept+=("$DESTDIR$path was changed since make install wrote it; remove it if it is not wanted: rm $DESTDIR$path")
			fi
			say "kept $DESTDIR$path (changed since it was installed)"
		elif [[ $kind == replaced && ! -f $DESTDIR${M_BACKUP[$path]} ]]; then
			kept+=("$DESTDIR$path replaced a file whose copy ($DESTDIR${M_BACKUP[$path]}) is gone; remove it if it is not wanted: rm $DESTDIR$path")
			say "kept $DESTDIR$path (the file it replaced is gone)"
		elif [[ $kind == replaced ]]; then
			cp -a "$DESTDIR${M_BACKUP[$path]}" "$DESTDIR$path.uninstall-$$"
			mv -fT "$DESTDIR$path.uninstall-$$" "$DESTDIR$path"
			rm -f "$DESTDIR${M_BACKUP[$path]}"
			say "restored $DESTDIR$path (the file FORCE=1 had replaced)"
		else
			rm -f "$DESTDIR$path"
			say "removed $DESTDIR$path"
		fi
	done
	rm -f "$DESTDIR$MANIFEST"
	say "removed $DESTDIR$MANIFEST"
	for ((i = ${#M_DIRS[@]} - 1; i >= 0; i--)); do
		dir=${M_DIRS[i]}
		[[ -d $DESTDIR$dir ]] || continue
		if rmdir "$DESTDIR$dir" 2>/dev/null; then
			say "removed $DESTDIR$dir/"
		else
			say "kept $DESTDIR$dir/ (created by make install, but holds files it did not install)"
		fi
	done
	if ((${#kept[@]} > 0)); then
		say "left in place:"
		printf '  %s\n' "${kept[@]}"
	fi
}

case $MODE in
install) do_install ;;
uninstall) do_uninstall ;;
*) die "usage: install.sh install|uninstall" ;;
esac
