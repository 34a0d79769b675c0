package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// edgeHostFile is what overlayd --mode edge writes: an address, no subnet,
// gateway or bridge.
var edgeHostFile = hostfile.HostFile{
	Kind: hostfile.KindEdge, Network: testHostFile.Network,
	Address: netip.MustParseAddr("10.244.255.3"), MTU: 1450, VNI: 1,
}

// becomeEdge turns the test host into an edge host, as restarting overlayd
// with --mode edge would: the host file says edge and the ready stamp is
// fresh (an edge host's overlayd reconciles and stamps too).
func (h *testHost) becomeEdge() {
	h.t.Helper()
	if err := hostfile.Write(hostfile.Path(h.runDir, "default"), edgeHostFile); err != nil {
		h.t.Fatal(err)
	}
	h.writeFreshReady()
}

// wantEdgeError checks err is the edge host error with code, naming the
// machine's address and what to do, and logs the error JSON as a runtime
// receives it.
func wantEdgeError(t *testing.T, verb string, err error, code uint) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Errorf("%s on an edge host: error = %v, want a CNI error with code %d", verb, err, code)
		return
	}
	if e.Msg != `network "default": this machine is an edge host` {
		t.Errorf("%s on an edge host: Msg = %q, want the edge host named", verb, e.Msg)
	}
	for _, want := range []string{"10.244.255.3", "no container subnet", "--mode edge", "overlayctl --network default", "teardown"} {
		if !strings.Contains(e.Details, want) {
			t.Errorf("%s on an edge host: Details %q lack %q", verb, e.Details, want)
		}
	}
	js, _ := json.Marshal(e)
	t.Logf("%s on an edge host: %s", verb, js)
}

// TestAddOnEdgeHost: ADD fails with 7 (the conflist names a network this
// machine only reaches as an edge host; retrying cannot help) and builds
// nothing: no veth, no address reserved.
func TestAddOnEdgeHost(t *testing.T) {
	h := newTestHost(t)
	h.becomeEdge()
	c := newNS(t)
	_, err := h.add(h.confList("1.1.0", ""), rt("c1", c))
	wantEdgeError(t, "ADD", err, types.ErrInvalidNetworkConfig)
	if got := h.reservations(); len(got) != 0 {
		t.Errorf("reservations after ADD on an edge host: %v", got)
	}
	if got := links(t, h.name(), "type", "veth"); len(got) != 0 {
		t.Errorf("veths left in the host: %v", linkNames(got))
	}
	if got := linkNames(links(t, c.name)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("container links after ADD on an edge host = %v, want only lo", got)
	}
}

// TestStatusOnEdgeHost: STATUS is 50 with the edge explanation even though
// the ready stamp is fresh.
func TestStatusOnEdgeHost(t *testing.T) {
	h := newTestHost(t)
	h.becomeEdge()
	wantEdgeError(t, "STATUS", h.status(h.confList("1.1.0", "")), types.ErrPluginNotAvailable)
}

// TestEdgeHostCleansUp: a container left from when the machine was a
// container host is reported by CHECK like ADD reports the edge host, and
// DEL (twice) and GC still clean it up.
func TestEdgeHostCleansUp(t *testing.T) {
	h := newTestHost(t)
	list := h.confList("1.1.0", "")
	c := newNS(t)
	res, _ := h.mustAdd(list, rt("c1", c))
	lost := h.withCache(t.TempDir())
	lost.mustAdd(list, rt("lost", newNS(t)))
	h.becomeEdge()

	wantEdgeError(t, "CHECK", h.check(list, rt("c1", c)), types.ErrInvalidNetworkConfig)
	for i := range 2 {
		if err := h.del(list, rt("c1", c)); err != nil {
			t.Fatalf("DEL #%d on an edge host: %v", i+1, err)
		}
	}
	h.wantReleased("c1")
	waitNoLink(t, h.name(), res.Interfaces[0].Name)
	err := h.inHost(func(ctx context.Context) error {
		return h.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}})
	})
	if err != nil {
		t.Fatalf("GC on an edge host: %v", err)
	}
	h.wantReleased("lost")
}
