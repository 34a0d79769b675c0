package ipamplugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlaynet/overlay/ipam/store"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// env is one simulated host: a run dir with (maybe) a host file and a data dir.
type env struct {
	runDir, dataDir string
}

func newEnv(t *testing.T, subnet string) env {
	t.Helper()
	e := env{runDir: t.TempDir(), dataDir: t.TempDir()}
	if subnet != "" {
		p := netip.MustParsePrefix(subnet)
		e.writeHostFile(t, hostfile.HostFile{
			Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: p, Gateway: p.Addr().Next(),
			MTU: 1450, Bridge: "overlay0", VNI: 1,
		})
	}
	return e
}

func (e env) hostFilePath() string { return hostfile.Path(e.runDir, "default") }

func (e env) writeHostFile(t *testing.T, hf hostfile.HostFile) {
	t.Helper()
	if err := hostfile.Write(e.hostFilePath(), hf); err != nil {
		t.Fatal(err)
	}
}

// writeReady writes overlayd's ready stamp.
func (e env) writeReady(t *testing.T, r hostfile.Ready) {
	t.Helper()
	if err := hostfile.WriteReady(hostfile.ReadyPath(e.runDir, "default"), r); err != nil {
		t.Fatal(err)
	}
}

func (e env) conf(cniVersion string, extra ...string) []byte {
	fields := append([]string{
		fmt.Sprintf(`"cniVersion":%q`, cniVersion), `"name":"test"`, `"type":"overlay"`,
		`"network":"default"`, fmt.Sprintf(`"runDir":%q`, e.runDir),
		fmt.Sprintf(`"ipam":{"type":"overlay-ipam","dataDir":%q}`, e.dataDir),
	}, extra...)
	return []byte("{" + strings.Join(fields, ",") + "}")
}

func (e env) reservations(t *testing.T) []store.Allocation {
	t.Helper()
	s, err := store.New(e.dataDir, "default")
	if err != nil {
		t.Fatal(err)
	}
	allocs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return allocs
}

func cmdArgs(id string, conf []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: id, Netns: "/var/run/netns/x", IfName: "eth0", StdinData: conf}
}

// add runs ADD and returns the result converted to the current version.
func add(t *testing.T, id string, conf []byte, cniVersion string) (*current.Result, error) {
	t.Helper()
	var out bytes.Buffer
	if err := (Plugin{Stdout: &out}).Add(cmdArgs(id, conf)); err != nil {
		if out.Len() != 0 {
			t.Errorf("failed ADD wrote to stdout: %s", out.String())
		}
		return nil, err
	}
	r, err := version.NewResult(cniVersion, out.Bytes())
	if err != nil {
		t.Fatalf("parse %s result %s: %v", cniVersion, out.String(), err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func wantCode(t *testing.T, err error, code uint) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("error = %v, want a CNI error with code %d", err, code)
	}
	return e
}

func TestAddCheckDel(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	conf := e.conf("1.0.0")
	res, err := add(t, "c1", conf, "1.0.0")
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.244.7.2/24" || res.IPs[0].Gateway.String() != "10.244.7.1" {
		t.Fatalf("ADD result IPs = %v, want 10.244.7.2/24 via 10.244.7.1", res.IPs)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" || res.Routes[0].GW.String() != "10.244.7.1" {
		t.Errorf("ADD result routes = %v, want default via 10.244.7.1", res.Routes)
	}
	p := Plugin{Stdout: &bytes.Buffer{}}
	if err := p.Check(cmdArgs("c1", conf)); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
	for i := range 2 {
		if err := p.Del(cmdArgs("c1", conf)); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if err := p.Check(cmdArgs("c1", conf)); err == nil {
		t.Error("CHECK after DEL succeeded")
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after DEL: %v", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stdout closed") }

// An ADD whose result cannot be delivered must not keep the address: the
// runtime never learns it exists, so no DEL would free it.
func TestAddReleasesWhenResultIsLost(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	if err := (Plugin{Stdout: failingWriter{}}).Add(cmdArgs("c1", e.conf("1.0.0"))); err == nil {
		t.Fatal("ADD with a broken stdout succeeded")
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after a failed ADD: %v", got)
	}
}

// A retried ADD whose result cannot be delivered must keep the address:
// the first ADD's container holds it, and releasing it would hand it to a
// second container.
func TestRetriedAddKeepsAddressWhenResultIsLost(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	conf := e.conf("1.0.0")
	if _, err := add(t, "c1", conf, "1.0.0"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if err := (Plugin{Stdout: failingWriter{}}).Add(cmdArgs("c1", conf)); err == nil {
		t.Fatal("retried ADD with a broken stdout succeeded")
	}
	got := e.reservations(t)
	if len(got) != 1 || got[0].Attachment.ContainerID != "c1" || got[0].IP.String() != "10.244.7.2" {
		t.Errorf("reservations after the failed retry = %v, want c1's 10.244.7.2 kept", got)
	}
}

func TestAddEveryVersion(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t, "10.244.7.0/24")
			res, err := add(t, "c1", e.conf(v), v)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.244.7.2/24" {
				t.Errorf("IPs = %v, want 10.244.7.2/24", res.IPs)
			}
		})
	}
}

func TestAddMissingHostFile(t *testing.T) {
	e := newEnv(t, "")
	_, err := add(t, "c1", e.conf("1.0.0"), "1.0.0")
	ce := wantCode(t, err, types.ErrTryAgainLater)
	if want := "host file " + e.hostFilePath() + " not found"; ce.Msg != want {
		t.Errorf("Msg = %q, want %q", ce.Msg, want)
	}
	if !strings.Contains(ce.Details, `network "default"`) || !strings.Contains(ce.Details, "is overlayd running?") {
		t.Errorf("Details = %q, want the network and a hint about overlayd", ce.Details)
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after failed ADD: %v", got)
	}
}

func TestAddUnusableHostFile(t *testing.T) {
	e := newEnv(t, "")
	if err := os.WriteFile(e.hostFilePath(), []byte(`{"subnet":"nope"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := add(t, "c1", e.conf("1.0.0"), "1.0.0")
	ce := wantCode(t, err, types.ErrTryAgainLater)
	if !strings.Contains(ce.Msg, e.hostFilePath()) || !strings.Contains(ce.Details, "restart overlayd") {
		t.Errorf("error %q / %q should name the file and say to restart overlayd", ce.Msg, ce.Details)
	}
}

func TestAddExhausted(t *testing.T) {
	e := newEnv(t, "10.244.7.0/30") // one container address
	if _, err := add(t, "c1", e.conf("1.0.0"), "1.0.0"); err != nil {
		t.Fatalf("first ADD: %v", err)
	}
	_, err := add(t, "c2", e.conf("1.0.0"), "1.0.0")
	ce := wantCode(t, err, types.ErrTryAgainLater)
	if ce.Msg != "subnet 10.244.7.0/30 is exhausted (1 addresses in use)" {
		t.Errorf("Msg = %q", ce.Msg)
	}
}

// TestStoreErrorCodes pins the codes runtimes act on: a busy or full store
// is worth retrying (11), a CHECK of an attachment without an address is
// 100, anything else the disk did is 5 (never 999). The lock wait itself
// is covered in ipam/store.
func TestStoreErrorCodes(t *testing.T) {
	s, err := store.New(t.TempDir(), "default")
	if err != nil {
		t.Fatal(err)
	}
	ce := wantCode(t, storeError(s, fmt.Errorf("lock x: %w", store.ErrLockTimeout)), types.ErrTryAgainLater)
	if ce.Msg != "ipam store is busy" || !strings.Contains(ce.Details, "lock x") {
		t.Errorf("lock timeout error = %q / %q", ce.Msg, ce.Details)
	}
	ce = wantCode(t, storeError(s, fmt.Errorf("c1/eth0: %w", store.ErrNotFound)), 100)
	if !strings.Contains(ce.Details, "no address is reserved") {
		t.Errorf("not found error = %q / %q", ce.Msg, ce.Details)
	}
	ce = wantCode(t, storeError(s, errors.New("boom")), types.ErrIOFailure)
	if !strings.Contains(ce.Msg, s.Dir()) || ce.Details != "boom" {
		t.Errorf("other store error = %q / %q", ce.Msg, ce.Details)
	}
}

func TestDelWithoutHostFile(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	conf := e.conf("1.0.0")
	if _, err := add(t, "c1", conf, "1.0.0"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if err := os.Remove(e.hostFilePath()); err != nil {
		t.Fatal(err)
	}
	if err := (Plugin{}).Del(cmdArgs("c1", conf)); err != nil {
		t.Fatalf("DEL without host file: %v", err)
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after DEL: %v", got)
	}
}

func TestCheckComparesPrevResult(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	if _, err := add(t, "c1", e.conf("1.0.0"), "1.0.0"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	prev := func(ip string) string {
		return fmt.Sprintf(`"prevResult":{"cniVersion":"1.0.0","ips":[{"address":%q,"gateway":"10.244.7.1"}]}`, ip)
	}
	if err := (Plugin{}).Check(cmdArgs("c1", e.conf("1.0.0", prev("10.244.7.2/24")))); err != nil {
		t.Errorf("CHECK with matching prevResult: %v", err)
	}
	if err := (Plugin{}).Check(cmdArgs("c1", e.conf("1.0.0", prev("10.244.7.99/24")))); err == nil {
		t.Error("CHECK with a prevResult naming another address succeeded")
	}
}

// TestStatus: STATUS is ready only with a usable host file and a fresh
// ready stamp from overlayd; ADD needs only the host file.
func TestStatus(t *testing.T) {
	e := newEnv(t, "")
	conf := e.conf("1.1.0")
	status := func() error { return (Plugin{}).Status(cmdArgs("", conf)) }
	ce := wantCode(t, status(), types.ErrPluginNotAvailable)
	if !strings.Contains(ce.Msg, e.hostFilePath()) {
		t.Errorf("STATUS Msg %q does not name the host file", ce.Msg)
	}
	e.writeHostFile(t, hostfile.HostFile{
		Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.7.0/24"),
		Gateway: netip.MustParseAddr("10.244.7.1"), MTU: 1450, Bridge: "overlay0", VNI: 1,
	})
	stamp := hostfile.ReadyPath(e.runDir, "default")
	ce = wantCode(t, status(), types.ErrPluginNotAvailable)
	if !strings.Contains(ce.Msg, stamp) || !strings.Contains(ce.Msg, "not found") || !strings.Contains(ce.Details, "systemctl status overlayd") {
		t.Errorf("STATUS without a ready stamp: %q / %q, want the stamp named and what to check", ce.Msg, ce.Details)
	}
	now := time.Now()
	e.writeReady(t, hostfile.Ready{PID: 1, Written: now.Add(-time.Minute), Until: now.Add(-time.Second)})
	ce = wantCode(t, status(), types.ErrPluginNotAvailable)
	if !strings.Contains(ce.Msg, stamp) || !strings.Contains(ce.Msg, "stale") {
		t.Errorf("STATUS with a stale stamp: %q / %q", ce.Msg, ce.Details)
	}
	if _, err := add(t, "c1", e.conf("1.1.0"), "1.1.0"); err != nil {
		t.Errorf("ADD with a stale stamp (overlayd restarting): %v", err)
	}
	e.writeReady(t, hostfile.Ready{PID: 1, Written: now, Until: now.Add(time.Minute)})
	if err := status(); err != nil {
		t.Errorf("STATUS with a host file and a fresh stamp: %v", err)
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	for _, id := range []string{"keep", "gone"} {
		if _, err := add(t, id, e.conf("1.1.0"), "1.1.0"); err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
	}
	valid, _ := json.Marshal([]types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}})
	conf := e.conf("1.1.0", `"cni.dev/valid-attachments":`+string(valid))
	if err := (Plugin{}).GC(&skel.CmdArgs{StdinData: conf}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	got := e.reservations(t)
	if len(got) != 1 || got[0].Attachment.ContainerID != "keep" {
		t.Errorf("reservations after GC = %v, want only keep's", got)
	}
}

// TestPrevResultOnlyMattersToCheck: a cached result that does not decode
// fails CHECK with code 7 but must never block DEL.
func TestPrevResultOnlyMattersToCheck(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	if _, err := add(t, "c1", e.conf("1.0.0"), "1.0.0"); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	conf := e.conf("1.0.0", `"prevResult":{"ips":"garbage"}`)
	ce := wantCode(t, (Plugin{}).Check(cmdArgs("c1", conf)), types.ErrInvalidNetworkConfig)
	if !strings.Contains(ce.Msg, `"prevResult"`) {
		t.Errorf("CHECK error %q does not name prevResult", ce.Msg)
	}
	if err := (Plugin{}).Del(cmdArgs("c1", conf)); err != nil {
		t.Fatalf("DEL with an undecodable prevResult: %v", err)
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after DEL: %v", got)
	}
}

func TestGCAttachmentLists(t *testing.T) {
	tests := []struct {
		name     string
		field    string // extra config field; "" sends no list at all
		wantKept int
		wantCode uint
	}{
		{name: "no list is refused", wantKept: 2, wantCode: types.ErrInvalidNetworkConfig},
		{name: "legacy key", field: `"cni.dev/attachments":[{"containerID":"c0","ifname":"eth0"}]`, wantKept: 1},
		{name: "empty list releases everything", field: `"cni.dev/valid-attachments":[]`, wantKept: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "10.244.7.0/24")
			for _, id := range []string{"c0", "c1"} {
				if _, err := add(t, id, e.conf("1.1.0"), "1.1.0"); err != nil {
					t.Fatalf("ADD %s: %v", id, err)
				}
			}
			var extra []string
			if tt.field != "" {
				extra = append(extra, tt.field)
			}
			err := (Plugin{}).GC(&skel.CmdArgs{StdinData: e.conf("1.1.0", extra...)})
			if tt.wantCode != 0 {
				wantCode(t, err, tt.wantCode)
			} else if err != nil {
				t.Fatalf("GC: %v", err)
			}
			if got := e.reservations(t); len(got) != tt.wantKept {
				t.Errorf("reservations after GC = %v, want %d", got, tt.wantKept)
			}
		})
	}
}

// edgeHostFile is what overlayd --mode edge writes: an address, no subnet.
var edgeHostFile = hostfile.HostFile{
	Kind: hostfile.KindEdge, Network: netip.MustParsePrefix("10.244.0.0/16"),
	Address: netip.MustParseAddr("10.244.255.3"), MTU: 1450, VNI: 1,
}

// wantEdgeError checks err is the edge host error with code, naming the
// machine's address and what to do.
func wantEdgeError(t *testing.T, err error, code uint) {
	t.Helper()
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != code {
		t.Errorf("error = %v, want a CNI error with code %d", err, code)
		return
	}
	if ce.Msg != `network "default": this machine is an edge host` {
		t.Errorf("Msg = %q, want the edge host named", ce.Msg)
	}
	for _, want := range []string{"10.244.255.3", "--mode edge", "overlayctl --network default", "teardown"} {
		if !strings.Contains(ce.Details, want) {
			t.Errorf("Details %q lack %q", ce.Details, want)
		}
	}
}

// TestEdgeHost: on an edge host ADD and CHECK fail with 7 (retrying cannot
// help) before the store is touched, STATUS answers 50 even with a fresh
// ready stamp, and DEL and GC still clean up reservations made while the
// machine was a container host.
func TestEdgeHost(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	if _, err := add(t, "old", e.conf("1.1.0"), "1.1.0"); err != nil {
		t.Fatalf("ADD on the container host: %v", err)
	}
	e.writeHostFile(t, edgeHostFile)
	now := time.Now()
	e.writeReady(t, hostfile.Ready{PID: 1, Written: now, Until: now.Add(time.Minute)})
	conf := e.conf("1.1.0")

	_, err := add(t, "c1", conf, "1.1.0")
	wantEdgeError(t, err, types.ErrInvalidNetworkConfig)
	if got := e.reservations(t); len(got) != 1 || got[0].Attachment.ContainerID != "old" {
		t.Errorf("reservations after ADD on an edge host = %v, want only old's", got)
	}
	wantEdgeError(t, (Plugin{}).Check(cmdArgs("old", conf)), types.ErrInvalidNetworkConfig)
	wantEdgeError(t, (Plugin{}).Status(cmdArgs("", conf)), types.ErrPluginNotAvailable)

	for i := range 2 {
		if err := (Plugin{}).Del(cmdArgs("old", conf)); err != nil {
			t.Fatalf("DEL #%d on an edge host: %v", i+1, err)
		}
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after DEL: %v", got)
	}
	if err := (Plugin{}).Del(cmdArgs("never-added", conf)); err != nil {
		t.Errorf("DEL of an attachment never added, on an edge host: %v", err)
	}
}

func TestGCOnEdgeHost(t *testing.T) {
	e := newEnv(t, "10.244.7.0/24")
	if _, err := add(t, "gone", e.conf("1.1.0"), "1.1.0"); err != nil {
		t.Fatalf("ADD on the container host: %v", err)
	}
	e.writeHostFile(t, edgeHostFile)
	if err := (Plugin{}).GC(&skel.CmdArgs{StdinData: e.conf("1.1.0", `"cni.dev/valid-attachments":[]`)}); err != nil {
		t.Fatalf("GC on an edge host: %v", err)
	}
	if got := e.reservations(t); len(got) != 0 {
		t.Errorf("reservations after GC: %v", got)
	}
}
