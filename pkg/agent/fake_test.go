package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/overlaynet/overlay/pkg/datapath"
)

// fakeDatapath records what the agent asks of the kernel and holds the
// resulting "kernel" state, so tests can assert on both without root.
type fakeDatapath struct {
	mu       sync.Mutex
	calls    []string
	vxlan    map[string]datapath.VXLANSpec // device name -> spec
	bridge   datapath.BridgeSpec
	peers    map[string][]datapath.Peer // device -> peers
	src      map[string]netip.Addr      // device -> routes' source address
	routes   []netip.Prefix             // the host's own routes (OtherRoutes)
	forward  bool
	failVX   error
	underlay datapath.Underlay
	changed  func(string)
	// txOff is each device's tx checksum offload turned off; a device
	// starts with it on.
	txOff map[string]bool
	// failCensus, when set, is what Census returns.
	failCensus error
}

func newFakeDatapath() *fakeDatapath {
	return &fakeDatapath{
		vxlan: map[string]datapath.VXLANSpec{}, peers: map[string][]datapath.Peer{}, src: map[string]netip.Addr{}, txOff: map[string]bool{},
		underlay: datapath.Underlay{Name: "eth0", Index: 2, IP: netip.MustParseAddr("198.18.0.11"), MTU: 1500},
	}
}

func (f *fakeDatapath) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeDatapath) FindUnderlay(string) (datapath.Underlay, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.underlay, nil
}

func (f *fakeDatapath) EnsureVXLAN(spec datapath.VXLANSpec) (datapath.VXLANResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failVX != nil {
		return datapath.VXLANResult{}, f.failVX
	}
	_, had := f.vxlan[spec.Name]
	if !had || f.vxlan[spec.Name].MTU != spec.MTU || f.vxlan[spec.Name].Address != spec.Address {
		f.record("vxlan %s vni=%d mtu=%d addr=%s", spec.Name, spec.VNI, spec.MTU, spec.Address)
	}
	f.vxlan[spec.Name] = spec
	return datapath.VXLANResult{Created: !had}, nil
}

func (f *fakeDatapath) EnsureBridge(spec datapath.BridgeSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bridge != spec {
		f.record("bridge %s gw=%s", spec.Name, spec.Gateway)
	}
	f.bridge = spec
	return nil
}

func (f *fakeDatapath) SyncPeers(t datapath.PeerTarget, peers []datapath.Peer) (datapath.Plan, error) {
	device, src := t.Device, t.Src
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vxlan[device]; !ok {
		return datapath.Plan{}, fmt.Errorf("look up device %q: not found", device)
	}
	// Like the kernel: a route to a subnet another device already routes
	// cannot be added (the agent must remove an old device first).
	for other, ps := range f.peers {
		for _, p := range ps {
			if other != device && slices.ContainsFunc(peers, func(q datapath.Peer) bool { return q.Subnet == p.Subnet }) {
				return datapath.Plan{}, fmt.Errorf("add route %s on %s: a route exists on %s: file exists", p.Subnet, device, other)
			}
		}
	}
	var plan datapath.Plan
	if !slices.EqualFunc(f.peers[device], peers, func(a, b datapath.Peer) bool { return a.Subnet == b.Subnet && a.PublicIP == b.PublicIP }) {
		f.record("peers %s %v", device, peerSubnets(peers))
		plan.AddRoutes = []datapath.Route{{}}
	}
	f.peers[device] = slices.Clone(peers)
	f.src[device] = src
	return plan, nil
}

// Census counts one route, neighbour and FDB entry per programmed peer.
func (f *fakeDatapath) Census(t datapath.PeerTarget, wanted []datapath.Peer) (datapath.Census, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failCensus != nil {
		return datapath.Census{}, f.failCensus
	}
	have := f.peers[t.Device]
	n := datapath.Census{Routes: len(have), Neighs: len(have), FDB: len(have)}
	for _, p := range wanted {
		if slices.ContainsFunc(have, func(q datapath.Peer) bool { return q.Subnet == p.Subnet && q.PublicIP == p.PublicIP }) {
			n.Programmed++
		}
	}
	return n, nil
}

func (f *fakeDatapath) TxChecksumOffload(device string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vxlan[device]; !ok {
		return false, fmt.Errorf("device %s not found", device)
	}
	return !f.txOff[device], nil
}

func (f *fakeDatapath) SetTxChecksumOffload(device string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("tx-checksum %s on=%v", device, on)
	f.txOff[device] = !on
	return nil
}

func (f *fakeDatapath) RemoveOrphans(_ string, t datapath.PeerTarget) ([]string, error) {
	keep := t.Device
	f.mu.Lock()
	defer f.mu.Unlock()
	var removed []string
	for name := range f.vxlan {
		if name != keep {
			delete(f.vxlan, name)
			delete(f.peers, name)
			removed = append(removed, "device "+name)
			f.record("remove %s", name)
		}
	}
	return removed, nil
}

func (f *fakeDatapath) OtherRoutes(string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.routes), nil
}

func (f *fakeDatapath) OwnedLinks(string) ([]datapath.OwnedLink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []datapath.OwnedLink
	for name := range f.vxlan {
		out = append(out, datapath.OwnedLink{Name: name, Type: "vxlan"})
	}
	if f.bridge.Name != "" {
		out = append(out, datapath.OwnedLink{Name: f.bridge.Name, Type: "bridge"})
	}
	return out, nil
}

func (f *fakeDatapath) EnableIPv4Forwarding() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.forward {
		f.record("ip_forward=1")
	}
	f.forward = true
	return nil
}

func (f *fakeDatapath) IPv4Forwarding() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forward, nil
}

func (f *fakeDatapath) Watch(ctx context.Context, _ func() []string, changed func(string)) {
	f.mu.Lock()
	f.changed = changed
	f.mu.Unlock()
	<-ctx.Done()
}

// deleteDevice simulates someone deleting a device, with its kernel event.
func (f *fakeDatapath) deleteDevice(name string) {
	f.mu.Lock()
	delete(f.vxlan, name)
	delete(f.peers, name)
	changed := f.changed
	f.mu.Unlock()
	if changed != nil {
		changed("link " + name)
	}
}

// state returns the VXLAN devices and the peers programmed on each.
func (f *fakeDatapath) state() (map[string]datapath.VXLANSpec, map[string][]netip.Prefix, datapath.BridgeSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	devs := map[string]datapath.VXLANSpec{}
	peers := map[string][]netip.Prefix{}
	for n, s := range f.vxlan {
		devs[n] = s
		peers[n] = peerSubnets(f.peers[n])
	}
	return devs, peers, f.bridge
}

func peerSubnets(ps []datapath.Peer) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, p.Subnet)
	}
	return out
}
