package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// simHost is one simulated host: its namespace, underlay address, VTEP MAC,
// subnet, and one container namespace.
type simHost struct {
	ns, ctr  nsNetNS
	publicIP netip.Addr
	mac      net.HardwareAddr
	subnet   netip.Prefix
}

func (h simHost) vtepIP() netip.Addr  { return h.subnet.Addr() }
func (h simHost) gateway() netip.Addr { return h.subnet.Addr().Next() }
func (h simHost) ctrIP() netip.Addr {
	a := h.subnet.Addr().As4()
	a[3] = 5
	return netip.AddrFrom4(a)
}

func (h simHost) asPeer() Peer {
	return Peer{Subnet: h.subnet, VTEPIP: h.vtepIP(), VTEPMAC: h.mac, PublicIP: h.publicIP}
}

// wireUnderlay joins a and b by a veth pair named eth0 on both sides.
func wireUnderlay(t *testing.T, a, b simHost) {
	t.Helper()
	do(t, a.ns, func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "eth0"
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(b.ns.Fd()))})
	})
	for _, h := range []simHost{a, b} {
		do(t, h.ns, func() error {
			link, err := netlinksafe.LinkByName("eth0")
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(netip.PrefixFrom(h.publicIP, 24))}); err != nil {
				return err
			}
			return netlink.LinkSetUp(link)
		})
	}
}

// bringUp programs h's datapath towards peer and attaches its container,
// as overlayd and the CNI plugin would.
func bringUp(t *testing.T, h, peer simHost) {
	t.Helper()
	do(t, h.ns, func() error {
		ul, err := FindUnderlay("eth0")
		if err != nil {
			return err
		}
		mtu := ul.MTU - VXLANOverhead
		dev := DeviceName(1)
		spec := VXLANSpec{Name: dev, VNI: 1, Port: 8472, LocalIP: ul.IP, UnderlayIndex: ul.Index,
			MAC: h.mac, MTU: mtu, Address: netip.PrefixFrom(h.vtepIP(), 32)}
		if _, err := EnsureVXLAN(spec); err != nil {
			return err
		}
		if err := EnsureBridge(BridgeSpec{Name: "overlay0", Gateway: netip.PrefixFrom(h.gateway(), h.subnet.Bits()), MTU: mtu}); err != nil {
			return err
		}
		if err := EnableIPv4Forwarding(); err != nil {
			return err
		}
		if _, err := SyncPeers(dev, []Peer{peer.asPeer()}); err != nil {
			return err
		}
		_, err = AttachContainer(ContainerSpec{Netns: h.ctr.Path(), IfName: "eth0", Bridge: "overlay0", MTU: mtu,
			Addr: netip.PrefixFrom(h.ctrIP(), h.subnet.Bits()), Gateway: h.gateway(),
			Owner: VethOwner{Network: "default", ContainerID: "ctr", IfName: "eth0"}})
		return err
	})
}

func TestTwoHostPing(t *testing.T) {
	ping, err := exec.LookPath("ping")
	if err != nil {
		t.Fatalf("ping is not installed; run `make deps` (it installs iputils-ping): %v", err)
	}
	a := simHost{ns: newNS(t), ctr: newNS(t), publicIP: netip.MustParseAddr("198.18.0.1"),
		mac: net.HardwareAddr{2, 0xaa, 0, 0, 0, 1}, subnet: mustPrefix("10.244.1.0/24")}
	b := simHost{ns: newNS(t), ctr: newNS(t), publicIP: netip.MustParseAddr("198.18.0.2"),
		mac: net.HardwareAddr{2, 0xaa, 0, 0, 0, 2}, subnet: mustPrefix("10.244.2.0/24")}
	wireUnderlay(t, a, b)
	bringUp(t, a, b)
	bringUp(t, b, a)
	for _, c := range []struct{ from, to simHost }{{a, b}, {b, a}} {
		cmd := exec.Command("ip", "netns", "exec", nsName(c.from.ctr), ping, "-c", "2", "-W", "2", c.to.ctrIP().String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("ping %s -> %s: %v\n%s%s", c.from.ctrIP(), c.to.ctrIP(), err, out, diagnose(c.from))
		}
	}
}

// diagnose dumps the sending host's datapath for a failure message.
func diagnose(h simHost) string {
	var s string
	for _, args := range [][]string{{"ip", "-d", "link"}, {"ip", "route"}, {"ip", "neigh"}, {"bridge", "fdb", "show", "dev", DeviceName(1)}} {
		out, _ := exec.Command("ip", append([]string{"netns", "exec", nsName(h.ns)}, args...)...).CombinedOutput()
		s += fmt.Sprintf("$ %v\n%s", args, out)
	}
	return s
}
