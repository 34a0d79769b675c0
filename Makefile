# overlay: build, test and demo.
#
#   make build          all binaries into bin/
#   make test           deps + build, go vet, unit tests (-race), end-to-end tests
#   make demo           3-host cluster in network namespaces, ping matrix, iperf3,
#                       edge hosts (a legacy VM and a gateway for a legacy LAN)
#   make demo KEEP=1    ... and keep the cluster up (prints how to remove it)
#   make demo-down STATE=/tmp/ovl-cluster.XXXXXX
#
# Everything needs root for the namespaces; nothing touches the root namespace.

SHELL := /bin/bash
# A plain root shell may not have Go on PATH.
export PATH := /usr/local/go/bin:$(PATH)
# Builds must not depend on git metadata (CI clones, tarballs, worktrees).
export GOFLAGS ?= -buildvcs=false

BIN := $(CURDIR)/bin
RACE ?= -race
UNIT_TIMEOUT ?= 10m
E2E_TIMEOUT ?= 10m
KEEP ?= 0

# name:package for every binary in bin/.
BINARIES := \
	overlayd:./overlayd \
	overlayctl:./overlayctl \
	overlay:./plugins/overlay \
	overlay-ipam:./ipam \
	devetcd:./hack/devetcd \
	demo-echo:./hack/demo-echo \
	cnitool:github.com/containernetworking/cni/cnitool \
	portmap:github.com/containernetworking/plugins/plugins/meta/portmap \
	loopback:github.com/containernetworking/plugins/plugins/main/loopback

.PHONY: all deps build test vet unit e2e demo demo-down clean fmt

all: build

deps:
	hack/deps.sh

build:
	@mkdir -p $(BIN)
	@set -e; for b in $(BINARIES); do \
		echo "go build -o bin/$${b%%:*} $${b#*:}"; \
		go build -o $(BIN)/$${b%%:*} $${b#*:}; \
	done

test: deps build
	$(MAKE) vet unit e2e

vet:
	go vet ./...

# Every package except the end-to-end tests, with the race detector.
unit:
	go test -count=1 $(RACE) -timeout $(UNIT_TIMEOUT) $$(go list ./... | grep -v '/test$$')

# The end-to-end tests run the binaries built above in network namespaces.
e2e:
	OVERLAY_BIN_DIR=$(BIN) go test -count=1 -v -timeout $(E2E_TIMEOUT) ./test/...

demo: deps build
	KEEP=$(KEEP) hack/demo.sh

demo-down:
	@test -n "$(STATE)" || { echo "usage: make demo-down STATE=/tmp/ovl-cluster.XXXXXX"; exit 2; }
	hack/cluster.sh down $(STATE)

clean:
	rm -rf $(BIN)

fmt:
	gofmt -s -w $$(find . -name '*.go' -not -path './.git/*')
