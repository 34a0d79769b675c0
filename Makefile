# overlay: build, test and demo.
#
#   make build          all binaries into bin/
#   make test           deps + build, go vet, unit tests (-race), end-to-end tests
#   make demo           3-host cluster in network namespaces, ping matrix, iperf3,
#                       edge hosts (a legacy VM and a gateway for a legacy LAN)
#   make demo KEEP=1    ... and keep the cluster up (prints how to remove it)
#   make demo-down STATE=/tmp/ovl-cluster.XXXXXX
#   make image          the container image (FROM scratch; podman build, offline)
#   make image-archive  ... saved as bin/overlay-VERSION.oci.tar
#   make bench          measure against the overlays users pick today (a table
#                       on stdout, JSON under bench/results); make bench-quick
#                       is a smaller run for development
#   make install        overlayd, overlayctl, the systemd unit, /etc/default/overlayd
#                       and the CNI plugins and conflist onto this host (a plain
#                       host; on Kubernetes the DaemonSet installs instead)
#   make uninstall      remove exactly what make install wrote (files changed since
#                       are kept and named); put back what FORCE=1 replaced
#
# The tests, demo and bench need root for the namespaces; they touch nothing
# in the root namespace. install/uninstall write this host (as root; DESTDIR
# stages instead) and take:
#   PREFIX=/usr/local          overlayd, overlayctl in PREFIX/bin; the manifest of
#                              what was installed in PREFIX/share/overlay
#   DESTDIR=                   staging root prefixed to every path (packaging, tests)
#   SYSCONFDIR=/etc            the env file goes to SYSCONFDIR/default/overlayd, written
#                              only when missing (an admin's copy is never overwritten)
#   SYSTEMD_UNIT_DIR=/etc/systemd/system   overlayd.service, its paths set to the above
#   CNI_BIN_DIR=/opt/cni/bin   overlay, overlay-ipam and the reference plugins; the
#                              host's own portmap etc. are kept (FORCE=1 replaces them)
#   CNI_NET_DIR=/etc/cni/net.d the conflist
#   CONFLIST=10-overlay.conflist   one of conf/*.conflist (see conf/README.md)
#   STATE_DIR=/var/lib/overlay the CNI install's ledger (cni-install.json); also
#                              OVERLAY_STATE_DIR in a newly written env file
#   FORCE=0                    1: replace foreign files of our names (backed up; make
#                              uninstall puts them back) and ours changed since install,
#                              and install even when another network's config sorts
#                              before ours (overlayctl cni install --force)

SHELL := /bin/bash
# A plain root shell may not have Go on PATH.
export PATH := /usr/local/go/bin:$(PATH)
# Builds must not depend on git metadata (CI clones, tarballs, worktrees).
export GOFLAGS ?= -buildvcs=false

BIN := $(CURDIR)/bin
VERSION := $(shell cat $(CURDIR)/VERSION)
IMAGE ?= ghcr.io/overlaynet/overlay
IMAGE_DIR := $(BIN)/image
# Static and stripped: the binaries run in the image (FROM scratch, no libc)
# and on any distribution's hosts.
GO_BUILD_FLAGS := -trimpath -ldflags "-s -w"
RACE ?= -race
UNIT_TIMEOUT ?= 10m
E2E_TIMEOUT ?= 10m
KEEP ?= 0

# make install / uninstall (documented above).
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
CNI_BIN_DIR ?= /opt/cni/bin
CNI_NET_DIR ?= /etc/cni/net.d
CONFLIST ?= 10-overlay.conflist
STATE_DIR ?= /var/lib/overlay
FORCE ?= 0
INSTALL_ENV = BIN='$(BIN)' PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' SYSCONFDIR='$(SYSCONFDIR)' \
	SYSTEMD_UNIT_DIR='$(SYSTEMD_UNIT_DIR)' CNI_BIN_DIR='$(CNI_BIN_DIR)' CNI_NET_DIR='$(CNI_NET_DIR)' \
	CONFLIST='$(CONFLIST)' STATE_DIR='$(STATE_DIR)' FORCE='$(FORCE)'

# name:package for every binary in bin/.
BINARIES := \
	overlayd:./overlayd \
	overlayctl:./overlayctl \
	overlay:./plugins/overlay \
	overlay-ipam:./ipam \
	devetcd:./hack/devetcd \
	demo-echo:./hack/demo-echo \
	bench:./hack/bench \
	cnitool:github.com/containernetworking/cni/cnitool \
	portmap:github.com/containernetworking/plugins/plugins/meta/portmap \
	bandwidth:github.com/containernetworking/plugins/plugins/meta/bandwidth \
	firewall:github.com/containernetworking/plugins/plugins/meta/firewall \
	tuning:github.com/containernetworking/plugins/plugins/meta/tuning \
	loopback:github.com/containernetworking/plugins/plugins/main/loopback

# What make bench compares against, built from the Go module proxy at pinned
# versions, outside go.mod (nothing of ours links them): flannel's CNI plugin
# (containernetworking/plugins kept it until v1.0; its own module,
# flannel-io/cni-plugin, is not served by the proxy here) and the bridge and
# host-local plugins it delegates to, as kube-flannel ships them.
FLANNEL_CNI := github.com/containernetworking/plugins/plugins/meta/flannel@v0.9.1
REF_PLUGINS := github.com/containernetworking/plugins/plugins/main/bridge@v1.10.0 \
	github.com/containernetworking/plugins/plugins/ipam/host-local@v1.10.0
BENCH_RESULTS ?= $(CURDIR)/bench/results
BENCH_ARGS ?=

.PHONY: all deps build test vet unit e2e demo demo-down bench bench-quick bench-tools clean fmt \
	image image-rootfs image-archive image-name install uninstall

all: build

deps:
	hack/deps.sh

build:
	@mkdir -p $(BIN)
	@set -e; for b in $(BINARIES); do \
		echo "CGO_ENABLED=0 go build -o bin/$${b%%:*} $${b#*:}"; \
		CGO_ENABLED=0 go build $(GO_BUILD_FLAGS) -o $(BIN)/$${b%%:*} $${b#*:}; \
	done

test: deps build image-rootfs
	$(MAKE) vet unit e2e

vet:
	go vet ./...

# Every package except the end-to-end tests, with the race detector.
unit:
	go test -count=1 $(RACE) -timeout $(UNIT_TIMEOUT) $$(go list ./... | grep -v '/test$$')

# The end-to-end tests run the binaries built above in network namespaces.
e2e:
	OVERLAY_BIN_DIR=$(BIN) OVERLAY_IMAGE_CONTEXT=$(IMAGE_DIR) OVERLAY_IMAGE=$(IMAGE):$(VERSION) go test -count=1 -v -timeout $(E2E_TIMEOUT) ./test/...

# The image's root filesystem, staged from bin/ (the e2e tests build the
# image from it with a private podman store).
image-rootfs: build
	hack/image-rootfs.sh $(BIN) $(IMAGE_DIR)/rootfs

image: image-rootfs
	podman build --pull=never -f Containerfile --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) $(IMAGE_DIR)

image-archive: image
	podman save --format oci-archive -o $(BIN)/overlay-$(VERSION).oci.tar $(IMAGE):$(VERSION)
	@echo "load it with: podman load -i $(BIN)/overlay-$(VERSION).oci.tar  (containerd: ctr -n k8s.io images import)"

image-name:
	@echo $(IMAGE):$(VERSION)

# The host part and the CNI part (overlayctl cni install), with a manifest
# and a ledger of what was written; a failure part-way undoes the run.
install: build
	$(INSTALL_ENV) hack/install.sh install

# No build: uninstall must work where there is no Go toolchain.
uninstall:
	$(INSTALL_ENV) hack/install.sh uninstall

demo: deps build
	KEEP=$(KEEP) hack/demo.sh

demo-down:
	@test -n "$(STATE)" || { echo "usage: make demo-down STATE=/tmp/ovl-cluster.XXXXXX"; exit 2; }
	hack/cluster.sh down $(STATE)

bench-tools:
	@mkdir -p $(BIN)/ref
	GOBIN=$(BIN)/ref go install $(FLANNEL_CNI)
	GOBIN=$(BIN)/ref go install $(REF_PLUGINS)

# Each run prints its table and saves it as JSON; nothing is left behind.
bench: deps build bench-tools
	$(BIN)/bench -bin $(BIN) -ref-bin $(BIN)/ref -results $(BENCH_RESULTS) -portmap $(BENCH_ARGS)

bench-quick: deps build bench-tools
	$(BIN)/bench -bin $(BIN) -ref-bin $(BIN)/ref -results $(BENCH_RESULTS) -containers 30 -rounds 2 -scale 1000 -converge-rounds 5 -gobench-quick -tput-runs 2 -tput-seconds 1 -tput-pings 100 $(BENCH_ARGS)

clean:
	rm -rf $(BIN)

fmt:
	gofmt -s -w $$(find . -name '*.go' -not -path './.git/*')
