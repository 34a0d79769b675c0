package cnierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

func TestCodes(t *testing.T) {
	tests := []struct {
		name string
		err  *types.Error
		code uint
		msg  string
	}{
		{"invalid config", InvalidConfig("network", "bad"), 7, `invalid network config: field "network"`},
		{"bad args", BadArgs("CNI_NETNS", "gone"), 4, "invalid CNI_NETNS"},
		{"try again", TryAgain("busy", "later"), 11, "busy"},
		{"unavailable", Unavailable("down", "start it"), 50, "down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Code != tt.code || tt.err.Msg != tt.msg || tt.err.Details == "" {
				t.Errorf("got %+v, want code %d msg %q and details", tt.err, tt.code, tt.msg)
			}
		})
	}
}

func TestHostFile(t *testing.T) {
	missing := fmt.Errorf("read: %w", hostfile.ErrNotExist)
	e := HostFile(types.ErrTryAgainLater, "/run/overlay/default.json", "default", missing)
	if e.Code != 11 || e.Msg != "host file /run/overlay/default.json not found" ||
		e.Details != `overlayd has not leased a subnet for network "default" on this host yet; is overlayd running?` {
		t.Errorf("missing host file: %+v", e)
	}
	e = HostFile(types.ErrPluginNotAvailable, "/run/overlay/blue.json", "blue", errors.New(`field "mtu" 5 is out of range`))
	if e.Code != 50 || !strings.Contains(e.Msg, "/run/overlay/blue.json") ||
		!strings.Contains(e.Details, `field "mtu"`) || !strings.Contains(e.Details, "restart overlayd") {
		t.Errorf("unusable host file: %+v", e)
	}
}

func TestNotReady(t *testing.T) {
	const path = "/run/overlay/default.ready"
	tests := []struct {
		name, msg string
		err       error
	}{
		{"missing", "overlayd is not ready: ready stamp " + path + " not found", fmt.Errorf("read: %w", hostfile.ErrNotExist)},
		{"stale", "overlayd is not ready: ready stamp " + path + " is stale", fmt.Errorf("last written by pid 7: %w", hostfile.ErrStale)},
		{"unreadable", "overlayd is not ready: ready stamp " + path + " is unusable", errors.New("parse: bad JSON")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NotReady(path, tt.err)
			if e.Code != types.ErrPluginNotAvailable || e.Msg != tt.msg ||
				!strings.Contains(e.Details, "systemctl status overlayd") || !strings.Contains(e.Details, "not running or not ready") {
				t.Errorf("NotReady = %+v, want code 50, %q and what to check", e, tt.msg)
			}
		})
	}
}

func TestDecodeNamesField(t *testing.T) {
	var v struct {
		IPAM struct {
			DataDir string `json:"dataDir"`
		} `json:"ipam"`
	}
	err := json.Unmarshal([]byte(`{"ipam":{"dataDir":7}}`), &v)
	e := Decode(err)
	if e.Code != 7 || e.Msg != `invalid network config: field "ipam.dataDir"` || !strings.Contains(e.Details, "number") {
		t.Errorf("Decode = %+v", e)
	}
	e = Decode(errors.New("something else"))
	if e.Code != 7 || e.Details != "something else" {
		t.Errorf("Decode of a plain error = %+v", e)
	}
}

// TestHostFileEdge: an edge host's file is the conflist's problem on this
// machine, not a passing state, so only STATUS keeps its 50 and everything
// else is 7, never 11; the message names the machine's address and says what
// to do.
func TestHostFileEdge(t *testing.T) {
	edge := fmt.Errorf("host file /run/overlay/blue.json: %w (address 10.244.255.3)", hostfile.ErrEdgeHost)
	tests := []struct {
		name     string
		asked    uint
		want     uint
		path     string
		teardown string
	}{
		{"ADD", types.ErrTryAgainLater, types.ErrInvalidNetworkConfig, "/run/overlay/blue.json", "`overlayctl --network blue teardown`"},
		{"CHECK", types.ErrInvalidNetworkConfig, types.ErrInvalidNetworkConfig, "/run/overlay/blue.json", "`overlayctl --network blue teardown`"},
		{"STATUS", types.ErrPluginNotAvailable, types.ErrPluginNotAvailable, "/run/overlay/blue.json", "`overlayctl --network blue teardown`"},
		{"other run dir", types.ErrTryAgainLater, types.ErrInvalidNetworkConfig, "/var/run/ov/blue.json", "`overlayctl --network blue --run-dir /var/run/ov teardown`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := HostFile(tt.asked, tt.path, "blue", edge)
			if e.Code != tt.want || e.Msg != `network "blue": this machine is an edge host` {
				t.Errorf("got code %d msg %q, want code %d and the edge host named", e.Code, e.Msg, tt.want)
			}
			for _, want := range []string{"10.244.255.3", "no container subnet", "--mode edge", "cannot be started",
				"container host", "stop overlayd", tt.teardown, "start overlayd without --mode edge"} {
				if !strings.Contains(e.Details, want) {
					t.Errorf("Details %q lack %q", e.Details, want)
				}
			}
		})
	}
}

// Coded leaves no error to skel's 999, and keeps every message of a
// wrapped or joined one with the first code.
func TestCoded(t *testing.T) {
	if Coded(nil) != nil {
		t.Error("Coded(nil) != nil")
	}
	busy := TryAgain("busy", "later")
	if Coded(busy) != busy {
		t.Error("a CNI error is not passed as is")
	}
	var ce *types.Error
	joined := errors.Join(errors.New("veth x: EBUSY"), fmt.Errorf("ipam: %w", busy))
	if !errors.As(Coded(joined), &ce) || ce.Code != 11 || ce.Msg != "busy" ||
		!strings.Contains(ce.Details, "veth x: EBUSY") || !strings.Contains(ce.Details, "later") {
		t.Errorf("Coded(joined) = %+v", ce)
	}
	if !errors.As(Coded(errors.New("netlink: EPERM")), &ce) || ce.Code != types.ErrIOFailure || ce.Msg != "netlink: EPERM" {
		t.Errorf("Coded(plain) = %+v", ce)
	}
	verb := CodedVerb(func(*skel.CmdArgs) error { return errors.New("x") })
	if !errors.As(verb(&skel.CmdArgs{}), &ce) || ce.Code != types.ErrIOFailure {
		t.Errorf("CodedVerb = %+v", ce)
	}
}
