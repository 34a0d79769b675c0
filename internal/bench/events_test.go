package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

func TestLineStamperStampsWholeLines(t *testing.T) {
	var out strings.Builder
	s := newLineStamper(&out)
	fmt.Fprint(s, "msg=starting\nmsg=rea")
	if _, ok, _ := s.find("msg=ready"); ok {
		t.Fatal("found a line before its end arrived")
	}
	_, _, changed := s.find("msg=ready")
	before := time.Now()
	fmt.Fprint(s, "dy network=default\n")
	select {
	case <-changed:
	default:
		t.Fatal("a new line did not wake waiters")
	}
	at, ok, _ := s.find("msg=ready")
	if !ok || at.Before(before) {
		t.Fatalf("find = %v, %v; want the line, stamped after %v", at, ok, before)
	}
	if out.String() != "msg=starting\nmsg=ready network=default\n" {
		t.Errorf("passed on %q", out.String())
	}
}

func TestFileWatchSeesAtomicWrites(t *testing.T) {
	dir := t.TempDir()
	w, err := watchFiles(dir, "default.json", "default.ready")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	before := time.Now()
	if err := atomicfile.WriteFile(filepath.Join(dir, "default.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	at, err := w.Wait(t.Context(), "default.json", 5*time.Second)
	if err != nil || at.Before(before) || at.After(after.Add(time.Second)) {
		t.Fatalf("Wait = %v, %v; written between %v and %v", at, err, before, after)
	}
	if _, err := w.Wait(t.Context(), "default.ready", 50*time.Millisecond); err == nil {
		t.Fatal("a file never written was reported")
	}
}

// The bench's own subscription sees a route and a VXLAN FDB entry being
// added inside a namespace, as the convergence row relies on.
func TestKernelEventsSeeRouteAndFDB(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces: run make test as root")
	}
	name := fmt.Sprintf("ovlbt%d-ev", os.Getpid())
	if err := addNetns(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := delNetns(name); err != nil {
			t.Error(err)
		}
	})
	k, err := watchKernel(name)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	since := time.Now()
	if err := ipIn(name, "link add vx0 type vxlan id 42 dstport 4789 local 198.18.0.11 nolearning", "link set vx0 up",
		"route add 10.244.99.0/24 via 10.244.99.0 dev vx0 onlink"); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:63")
	if out, err := exec.Command("bridge", "-n", name, "fdb", "append", mac.String(), "dev", "vx0", "dst", "198.18.0.99", "self", "permanent").CombinedOutput(); err != nil {
		t.Fatalf("bridge fdb append: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := k.wait(ctx, since, "the route", 5*time.Second, routeTo(netip.MustParsePrefix("10.244.99.0/24"), false)); err != nil {
		t.Error(err)
	}
	if _, err := k.wait(ctx, since, "the FDB entry", 5*time.Second, fdbOf(mac)); err != nil {
		t.Error(err)
	}
}
