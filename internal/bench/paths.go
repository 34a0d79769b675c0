package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// Path is one way from a client namespace to a server address that the
// throughput row measures.
type Path struct {
	Name   string
	Client string // namespace iperf3 -c and ping run in
	Server string // namespace iperf3 -s runs in
	Dst    netip.Addr
	devs   pathDevs
}

// overlayPort is the VXLAN port of overlay's network in the bench.
const overlayPort = 8472

// The reference: the kernel's VXLAN wired by hand on another VNI, port
// and range than overlay's, with the entries overlayd programs.
const (
	refVNI    = 4242
	refPort   = 4790
	refVXLAN  = "refvx0"
	refBridge = "refbr0"
	refRange  = "10.245" // host N gets 10.245.N.0/24
)

// refMAC is host n's reference VTEP MAC (locally administered).
func refMAC(n int) string { return fmt.Sprintf("02:52:45:46:00:%02x", n) }

// referencePath wires hosts a and b by hand, as overlayd would if it ran a
// network on VNI refVNI over refRange: per host a VXLAN device (local
// underlay IP, nolearning) with the VTEP address N.0/32, a bridge with the
// gateway N.1/24, a container namespace with a veth on the bridge; per peer
// an onlink route to its subnet via its VTEP IP on the VXLAN device, a
// permanent neighbour VTEP IP → VTEP MAC, and an FDB entry VTEP MAC → its
// underlay IP. The container namespaces are created here; the caller
// deletes them (refCtr names them) and the rest goes with the hosts.
func referencePath(prefix string, a, b *ClusterHost, mtu int) (Path, error) {
	hosts := [2]*ClusterHost{a, b}
	p := Path{Name: "reference", Client: refCtr(prefix, a), Server: refCtr(prefix, b)}
	for i, h := range hosts {
		peer := hosts[1-i]
		ctr := refCtr(prefix, h)
		veth := fmt.Sprintf("refveth%d", h.N)
		p.devs.hosts[i], p.devs.ctrs[i], p.devs.veths[i] = h.NS, ctr, veth
		p.devs.vxlan[i], p.devs.bridge[i] = refVXLAN, refBridge
		p.devs.port, p.devs.cidr = fmt.Sprint(refPort), refRange+".0.0/16"
		p.devs.ips[i] = h.IP
		if err := addNetns(ctr); err != nil {
			return p, err
		}
		m := fmt.Sprint(mtu)
		err := ipIn(h.NS,
			fmt.Sprintf("link add %s type vxlan id %d dstport %d local %s dev eth0 nolearning", refVXLAN, refVNI, refPort, h.IP),
			fmt.Sprintf("link set %s address %s mtu %s up", refVXLAN, refMAC(h.N), m),
			fmt.Sprintf("addr add %s.%d.0/32 dev %s", refRange, h.N, refVXLAN),
			"link add "+refBridge+" type bridge",
			"link set "+refBridge+" mtu "+m+" up",
			fmt.Sprintf("addr add %s.%d.1/24 dev %s", refRange, h.N, refBridge),
			fmt.Sprintf("link add %s mtu %s type veth peer name eth0 mtu %s netns %s", veth, m, m, ctr),
			fmt.Sprintf("link set %s master %s up", veth, refBridge),
			fmt.Sprintf("neigh replace %s.%d.0 lladdr %s dev %s nud permanent", refRange, peer.N, refMAC(peer.N), refVXLAN),
			fmt.Sprintf("route add %s.%d.0/24 via %s.%d.0 dev %s onlink", refRange, peer.N, refRange, peer.N, refVXLAN),
		)
		if err != nil {
			return p, err
		}
		if err := nsRun(h.NS, "bridge", "fdb", "append", refMAC(peer.N), "dev", refVXLAN, "dst", peer.IP.String(), "self", "permanent"); err != nil {
			return p, err
		}
		err = ipIn(ctr,
			fmt.Sprintf("addr add %s.%d.2/24 dev eth0", refRange, h.N),
			"link set eth0 up",
			fmt.Sprintf("route add default via %s.%d.1", refRange, h.N))
		if err != nil {
			return p, err
		}
	}
	p.Dst = netip.MustParseAddr(fmt.Sprintf("%s.%d.2", refRange, b.N))
	return p, nil
}

func refCtr(prefix string, h *ClusterHost) string { return fmt.Sprintf("%s-r%d", prefix, h.N) }

// underlayPath is host a's eth0 to host b's.
func underlayPath(a, b *ClusterHost) Path {
	return Path{Name: "underlay", Client: a.NS, Server: b.NS, Dst: b.IP,
		devs: pathDevs{hosts: [2]string{a.NS, b.NS}, ips: [2]netip.Addr{a.IP, b.IP}}}
}

// overlayAttachment is a container attached through overlay's CNI plugin.
type overlayAttachment struct {
	host *ClusterHost
	ctr  string
	list *libcni.NetworkConfigList
	rt   *libcni.RuntimeConf
	cni  *libcni.CNIConfig
	ip   netip.Addr
}

// attachOverlay creates a container namespace on h and runs CNI ADD of
// overlay's plugins for it through libcni, as a runtime on h would.
func attachOverlay(ctx context.Context, prefix, bin, work string, h *ClusterHost) (*overlayAttachment, error) {
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"overlay","plugins":[{"type":"overlay","network":%q,"runDir":%q,"ipam":{"type":"overlay-ipam","dataDir":%q}}]}`,
		h.c.Network, h.RunDir, h.CNIDir)
	list, err := libcni.NetworkConfFromBytes([]byte(conf))
	if err != nil {
		return nil, fmt.Errorf("overlay conflist: %w", err)
	}
	a := &overlayAttachment{host: h, ctr: fmt.Sprintf("%s-o%d", prefix, h.N), list: list,
		cni: libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(work, "cni-cache"), nil)}
	a.rt = &libcni.RuntimeConf{ContainerID: a.ctr, NetNS: netnsDir + a.ctr, IfName: "eth0"}
	if err := addNetns(a.ctr); err != nil {
		return nil, err
	}
	var res *types100.Result
	err = inNetns(h.NS, func() error {
		r, err := a.cni.AddNetworkList(ctx, list, a.rt)
		if err != nil {
			return err
		}
		res, err = types100.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return a, fmt.Errorf("CNI ADD of %s on %s: %w", a.ctr, h.NS, err)
	}
	if len(res.IPs) == 0 {
		return a, fmt.Errorf("CNI ADD of %s on %s returned no IP", a.ctr, h.NS)
	}
	a.ip, _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	return a, nil
}

// detach runs CNI DEL and removes the container namespace.
func (a *overlayAttachment) detach(ctx context.Context) error {
	err := inNetns(a.host.NS, func() error { return a.cni.DelNetworkList(context.WithoutCancel(ctx), a.list, a.rt) })
	if err != nil {
		err = fmt.Errorf("CNI DEL of %s: %w", a.ctr, err)
	}
	if derr := delNetns(a.ctr); derr != nil && err == nil {
		err = derr
	}
	return err
}

// overlayPath is the path between two attached containers, with the
// devices overlay gave them.
func overlayPath(a, b *overlayAttachment, hf hostfile.HostFile) (Path, error) {
	p := Path{Name: "overlay", Client: a.ctr, Server: b.ctr, Dst: b.ip}
	p.devs.port, p.devs.cidr = fmt.Sprint(overlayPort), hf.Network.String()
	for i, at := range []*overlayAttachment{a, b} {
		peer := []*overlayAttachment{b, a}[i]
		veth, err := hostVeth(at.host.NS, at.ctr)
		if err != nil {
			return p, err
		}
		vx, err := routeDev(at.host.NS, peer.ip)
		if err != nil {
			return p, err
		}
		br, err := routeDev(at.host.NS, at.ip)
		if err != nil {
			return p, err
		}
		p.devs.hosts[i], p.devs.ctrs[i], p.devs.veths[i], p.devs.vxlan[i], p.devs.bridge[i] = at.host.NS, at.ctr, veth, vx, br
		p.devs.ips[i] = at.host.IP
	}
	return p, nil
}

// hostVeth names the host side of the veth whose other end is eth0 in ctr.
func hostVeth(host, ctr string) (string, error) {
	var in []struct {
		LinkIndex int `json:"link_index"`
	}
	if err := ipJSON(ctr, &in, "link", "show", "eth0"); err != nil {
		return "", err
	}
	if len(in) != 1 || in[0].LinkIndex == 0 {
		return "", fmt.Errorf("eth0 in %s has no veth peer", ctr)
	}
	var links []struct {
		Index int    `json:"ifindex"`
		Name  string `json:"ifname"`
	}
	if err := ipJSON(host, &links, "link", "show"); err != nil {
		return "", err
	}
	for _, l := range links {
		if l.Index == in[0].LinkIndex {
			return l.Name, nil
		}
	}
	return "", fmt.Errorf("no link %d in %s (the veth peer of eth0 in %s)", in[0].LinkIndex, host, ctr)
}

// routeDev is the device host routes dst through.
func routeDev(host string, dst netip.Addr) (string, error) {
	var r []struct {
		Dev string `json:"dev"`
	}
	if err := ipJSON(host, &r, "route", "get", dst.String()); err != nil {
		return "", err
	}
	if len(r) == 0 || r[0].Dev == "" {
		return "", fmt.Errorf("no route to %s in %s", dst, host)
	}
	return r[0].Dev, nil
}

func ipJSON(netns string, v any, args ...string) error {
	out, err := nsOutput(netns, "ip", append([]string{"-j"}, args...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("ip -j %v in %s: %w", args, netns, err)
	}
	return nil
}
