package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/overlaynet/overlay/pkg/ingress"
)

// Tuning is a variant of a measured path: settings applied to the path's
// devices just before each of its measurements and undone just after, so
// the variant runs on the very devices of its base path, interleaved with
// it, and a setting on a device two paths share (eth0, a sysctl) touches
// only the variant's own turns.
type Tuning struct {
	// Base is the path the settings apply to: overlay, reference or
	// underlay.
	Base     string
	Settings []Setting
}

// Setting is one change: an ethtool feature on one of the path's devices
// (on both hosts), a sysctl of both host namespaces, or notrack.
type Setting struct {
	// Dev is a device role (veth: the host side of the container's veth;
	// ctr: the container's eth0; vxlan; bridge; eth0: the host's underlay),
	// or "sysctl", or "notrack": conntrack bypassed in both hosts' raw
	// table for every packet, or (Feature "vxlan") for the path's VXLAN
	// packets only, or (Feature "inner") for container traffic inside the
	// path's range only; or "ingress": overlay's own VXLAN ingress filter
	// (pkg/ingress: the path's VXLAN port admitted only from the two
	// hosts), to give the reference what overlay adds on that path.
	Dev     string
	Feature string
	Value   string
}

// benchIngressNetwork names the ingress filter the "ingress" setting
// installs, so it never is a network's own.
const benchIngressNetwork = "bench-ref"

var (
	tuneBases   = []string{"overlay", "reference", "underlay"}
	tuneDevs    = []string{"veth", "ctr", "vxlan", "bridge", "eth0"}
	onOff       = []string{"on", "off"}
	notrackRule = []string{"-j", "CT", "--notrack"}
	notrackOf   = []string{"", "vxlan", "inner"}
)

// DefaultTunings are the variants `make bench` measures unless told
// otherwise: the reference with overlay's VXLAN ingress filter, the one
// thing on overlay's path per packet that the naive reference lacks, so
// the table shows the reference both ways.
func DefaultTunings() []Tuning {
	return []Tuning{{Base: "reference", Settings: []Setting{{Dev: "ingress"}}}}
}

// ParseTuning reads "BASE:SETTING,SETTING…", a SETTING being
// DEV.FEATURE=on|off (ethtool -K), sysctl.NAME=VALUE or notrack; e.g.
// "reference:veth.gro=on,veth.rx-udp-gro-forwarding=on".
func ParseTuning(spec string) (Tuning, error) {
	base, list, ok := strings.Cut(spec, ":")
	if !ok || !slices.Contains(tuneBases, base) || list == "" {
		return Tuning{}, fmt.Errorf("tuning %q: want BASE:SETTING[,SETTING…] with BASE one of %s", spec, strings.Join(tuneBases, ", "))
	}
	t := Tuning{Base: base}
	for item := range strings.SplitSeq(list, ",") {
		s, err := parseSetting(item)
		if err != nil {
			return Tuning{}, fmt.Errorf("tuning %q: %w", spec, err)
		}
		if base == "underlay" && slices.Contains(tuneDevs, s.Dev) && s.Dev != "eth0" {
			return Tuning{}, fmt.Errorf("tuning %q: the underlay path has no %s, only eth0", spec, s.Dev)
		}
		t.Settings = append(t.Settings, s)
	}
	return t, nil
}

func parseSetting(item string) (Setting, error) {
	if item == "ingress" {
		return Setting{Dev: "ingress"}, nil
	}
	if what, ok := strings.CutPrefix(item, "notrack"); ok {
		what = strings.TrimPrefix(what, ".")
		if !slices.Contains(notrackOf, what) {
			return Setting{}, fmt.Errorf("setting %q: want notrack, notrack.vxlan or notrack.inner", item)
		}
		return Setting{Dev: "notrack", Feature: what}, nil
	}
	key, value, ok := strings.Cut(item, "=")
	dev, feature, ok2 := strings.Cut(key, ".")
	if !ok || !ok2 || feature == "" || value == "" {
		return Setting{}, fmt.Errorf("setting %q: want DEV.FEATURE=VALUE, sysctl.NAME=VALUE or notrack", item)
	}
	switch {
	case dev == "sysctl" && !strings.HasPrefix(feature, "net."):
		// Only net.* sysctls belong to a network namespace; a kernel.* or
		// vm.* one written "inside" the hosts would change the machine.
		return Setting{}, fmt.Errorf("setting %q: only net.* sysctls can be tuned (they are per network namespace; others would change the whole machine)", item)
	case dev == "sysctl":
	case slices.Contains(tuneDevs, dev):
		if !slices.Contains(onOff, value) {
			return Setting{}, fmt.Errorf("setting %q: an ethtool feature is on or off", item)
		}
	default:
		return Setting{}, fmt.Errorf("setting %q: device %q is none of %s, sysctl", item, dev, strings.Join(tuneDevs, ", "))
	}
	return Setting{Dev: dev, Feature: feature, Value: value}, nil
}

func (s Setting) String() string {
	if s.Dev == "ingress" {
		return "overlay's ingress filter"
	}
	if s.Dev == "notrack" {
		if s.Feature != "" {
			return s.Dev + "." + s.Feature
		}
		return s.Dev
	}
	return s.Dev + "." + s.Feature + "=" + s.Value
}

// Name is how the variant appears in the table.
func (t Tuning) Name() string {
	parts := make([]string, len(t.Settings))
	for i, s := range t.Settings {
		parts[i] = s.String()
	}
	return t.Base + " + " + strings.Join(parts, ", ")
}

// pathDevs names a path's devices on each of the two hosts: where the
// settings of a Tuning go.
type pathDevs struct {
	hosts  [2]string // host namespaces
	ctrs   [2]string // container namespaces ("" on the underlay)
	veths  [2]string // host side of each container's veth
	vxlan  [2]string
	bridge [2]string
	// port and cidr are the path's VXLAN port and range (notrack), ips
	// the hosts' underlay addresses (ingress).
	port string
	cidr string
	ips  [2]netip.Addr
}

// dev is the namespace and name of device role on host i.
func (d pathDevs) dev(role string, i int) (netns, name string) {
	switch role {
	case "veth":
		return d.hosts[i], d.veths[i]
	case "ctr":
		return d.ctrs[i], "eth0"
	case "vxlan":
		return d.hosts[i], d.vxlan[i]
	case "bridge":
		return d.hosts[i], d.bridge[i]
	}
	return d.hosts[i], "eth0"
}

// apply makes t's settings on d and returns what undoes them (also when
// apply fails halfway: what was done is undone).
func (t Tuning) apply(d pathDevs) (undo func() error, err error) {
	var undos []func() error
	undo = func() error {
		var errs []error
		for _, u := range slices.Backward(undos) {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	for _, s := range t.Settings {
		for i := range d.hosts {
			u, err := s.apply(d, i)
			if u != nil {
				undos = append(undos, u)
			}
			if err != nil {
				return undo, fmt.Errorf("%s on %s: %w", s, d.hosts[i], err)
			}
		}
	}
	return undo, nil
}

func (s Setting) apply(d pathDevs, i int) (func() error, error) {
	host := d.hosts[i]
	switch s.Dev {
	case "ingress":
		port, err := strconv.ParseUint(d.port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("the path has no VXLAN port")
		}
		f := ingress.New(benchIngressNetwork)
		undo := func() error { return inNetns(host, f.Remove) }
		return undo, inNetns(host, func() error { return f.Ensure(uint16(port), d.ips[:]) })
	case "notrack":
		rules, err := s.notrackRules(d)
		if err != nil {
			return nil, err
		}
		var done [][]string
		undo := func() error {
			var errs []error
			for _, r := range slices.Backward(done) {
				errs = append(errs, nsRun(host, "iptables", append([]string{"-w", "-t", "raw", "-D"}, r...)...))
			}
			return errors.Join(errs...)
		}
		for _, r := range rules {
			if err := nsRun(host, "iptables", append([]string{"-w", "-t", "raw", "-I", r[0], "1"}, r[1:]...)...); err != nil {
				return undo, err
			}
			done = append(done, r)
		}
		return undo, nil
	case "sysctl":
		old, err := nsOutput(host, "sysctl", "-n", s.Feature)
		if err != nil {
			return nil, err
		}
		old = strings.TrimSpace(old)
		if err := nsRun(host, "sysctl", "-qw", s.Feature+"="+s.Value); err != nil {
			return nil, err
		}
		return func() error { return nsRun(host, "sysctl", "-qw", s.Feature+"="+old) }, nil
	}
	netns, dev := d.dev(s.Dev, i)
	if netns == "" || dev == "" {
		return nil, fmt.Errorf("the path has no %s device", s.Dev)
	}
	before, err := ethtoolFeatures(netns, dev)
	if err != nil {
		return nil, err
	}
	// Undo restores every feature that changed: one -K may switch
	// dependent features too (tx off turns TSO off).
	undo := func() error {
		after, err := ethtoolFeatures(netns, dev)
		if err != nil {
			return err
		}
		args := []string{"-K", dev}
		for f, v := range before {
			if after[f] != v {
				args = append(args, f, v)
			}
		}
		if len(args) == 2 {
			return nil
		}
		return nsRun(netns, "ethtool", args...)
	}
	if err := nsRun(netns, "ethtool", "-K", dev, s.Feature, s.Value); err != nil {
		return undo, err
	}
	return undo, nil
}

// notrackRules are the raw-table rules (chain first) of a notrack
// setting. The VXLAN packets a host sends pass OUTPUT, those it receives
// PREROUTING; container traffic is forwarded, PREROUTING only.
func (s Setting) notrackRules(d pathDevs) ([][]string, error) {
	var match []string
	chains := []string{"PREROUTING", "OUTPUT"}
	switch s.Feature {
	case "vxlan":
		match = []string{"-p", "udp", "--dport", d.port}
	case "inner":
		match = []string{"-s", d.cidr, "-d", d.cidr}
		chains = chains[:1]
	}
	if len(match) > 0 && slices.Contains(match, "") {
		return nil, fmt.Errorf("the path has no VXLAN port or range")
	}
	var rules [][]string
	for _, c := range chains {
		rules = append(rules, append(append([]string{c}, match...), notrackRule...))
	}
	return rules, nil
}

// ethtoolFeatures reads the features of dev a user can change, as
// `ethtool -k` names them.
func ethtoolFeatures(netns, dev string) (map[string]string, error) {
	out, err := nsOutput(netns, "ethtool", "-k", dev)
	if err != nil {
		return nil, err
	}
	return parseEthtoolFeatures(out), nil
}

func parseEthtoolFeatures(out string) map[string]string {
	fs := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok || strings.Contains(rest, "[fixed]") {
			continue
		}
		if v, _, _ := strings.Cut(rest, " "); v == "on" || v == "off" {
			fs[name] = v
		}
	}
	return fs
}

// nsRun runs a command in netns.
func nsRun(netns, bin string, args ...string) error {
	_, err := nsOutput(netns, bin, args...)
	return err
}

// nsOutput runs a command in netns and returns its stdout.
func nsOutput(netns, bin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, bin}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s %s in %s: %w", bin, strings.Join(args, " "), netns, err)
	}
	return string(out), nil
}
