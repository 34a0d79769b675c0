package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// The test binary doubles as overlayctl: run with OVERLAYCTL_MAIN=1 it is
// main(), so a test sees exactly what a user sees on stderr.
func TestMain(m *testing.M) {
	if os.Getenv("OVERLAYCTL_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run executes overlayctl's command tree in-process.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root, done := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	done()
	return out.String(), err
}

func tlsFlags(endpoint, ca, cert, key string) []string {
	return []string{"--etcd-endpoints", endpoint, "--etcd-cafile", ca, "--etcd-certfile", cert, "--etcd-keyfile", key, "--etcd-timeout", "20s"}
}

func TestLeasesOverTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	flags := tlsFlags(srv.ClientURL(), certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)

	if out, err := run(t, append(flags, "network", "set", "default", "--cidr", "10.244.0.0/16")...); err != nil {
		t.Fatalf("network set: %v\n%s", err, out)
	}
	// A host's lease, as overlayd would write it.
	c, err := subnet.Connect(t.Context(), subnet.ClientConfig{
		Endpoints: srv.Endpoints(), CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472}
	h, err := c.Acquire(t.Context(), subnet.AcquireRequest{Network: "default", Config: cfg, TTL: 30 * time.Second,
		Record: subnet.Record{HostID: "host-1", Hostname: "h1", PublicIP: netip.MustParseAddr("198.18.0.11"), VTEPMAC: "02:00:00:00:00:01"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()

	out, err := run(t, append(flags, "leases", "-o", "json")...)
	if err != nil {
		t.Fatalf("leases: %v\n%s", err, out)
	}
	var views []leaseView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatalf("leases -o json: %v\n%s", err, out)
	}
	if len(views) != 1 || views[0].Subnet != h.Subnet.String() || views[0].Hostname != "h1" {
		t.Fatalf("leases: %+v, want %s of h1", views, h.Subnet)
	}
}

func TestLeasesWrongCA(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewTLS(t, certs, true)
	want := "etcd TLS: " + srv.ClientURL() + ": etcd's certificate is not signed by the CA in " + certs.OtherCAFile +
		"; give --etcd-cafile the CA that signed etcd's server certificate"
	args := append(tlsFlags(srv.ClientURL(), certs.OtherCAFile, certs.ClientCertFile, certs.ClientKeyFile), "leases")

	start := time.Now()
	_, err := run(t, args...)
	if err == nil || err.Error() != want || !errors.Is(err, subnet.ErrTLS) {
		t.Fatalf("leases with the wrong CA:\n got: %v\nwant: %s", err, want)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the error took %s: Connect waited for --etcd-timeout", took)
	}

	// What the user sees: one line on stderr, exit code 1.
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "OVERLAYCTL_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("overlayctl exited with %v, want exit code 1", err)
	}
	if got := stderr.String(); got != "overlayctl: "+want+"\n" {
		t.Fatalf("stderr:\n%q\nwant:\n%q", got, "overlayctl: "+want+"\n")
	}
	if strings.TrimSpace(stdout.String()) != "" {
		t.Fatalf("stdout: %q", stdout.String())
	}
}
