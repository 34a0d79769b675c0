package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

// The test binary doubles as devetcd: run with DEVETCD_MAIN=1 it is main().
func TestMain(m *testing.M) {
	if os.Getenv("DEVETCD_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// proc is one devetcd process started by a test.
type proc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

var leaderLine = regexp.MustCompile(`(?m)^devetcd: (?:leader is (\S+)|no leader)$`)

// Leader is the last leader the process reported ("" for none).
func (p *proc) Leader() string {
	all := leaderLine.FindAllStringSubmatch(p.Output(), -1)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1][1]
}

func startDevetcd(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "DEVETCD_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("devetcd %v output:\n%s", args, p.Output())
		}
	})
	return p
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestSingleMemberDefault(t *testing.T) {
	client := "http://" + freePort(t)
	p := startDevetcd(t, "--data-dir", t.TempDir(), "--listen-client", client, "--listen-peer", "http://"+freePort(t))
	waitFor(t, 30*time.Second, "ready and leader", func() bool { return p.Leader() == etcdtest.DefaultName })
	if !strings.Contains(p.Output(), "devetcd: ready on "+client+"\n") {
		t.Fatalf("no ready line:\n%s", p.Output())
	}
	if !regexp.MustCompile(`(?m)^devetcd: member overlay-dev id [0-9a-f]+ \([0-9]+\)$`).MatchString(p.Output()) {
		t.Fatalf("no member line:\n%s", p.Output())
	}
}

func TestMissingDataDir(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DEVETCD_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || string(out) != "devetcd: --data-dir is required\n" {
		t.Fatalf("exit %v, output %q", err, out)
	}
}

// Three processes form one cluster; SIGKILL of the leader's process leaves
// two members that elect a new leader and say so.
func TestThreeProcessesLeaderKill(t *testing.T) {
	type member struct {
		name, client, peer string
		p                  *proc
	}
	members := make([]*member, 3)
	var initial []string
	for i := range members {
		m := &member{name: fmt.Sprintf("m%d", i+1), client: "http://" + freePort(t), peer: "http://" + freePort(t)}
		members[i] = m
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range members {
		m.p = startDevetcd(t, "--data-dir", filepath.Join(t.TempDir(), m.name), "--name", m.name,
			"--listen-client", m.client, "--listen-peer", m.peer, "--initial-cluster", strings.Join(initial, ","))
	}
	agreed := func(ms []*member) string {
		lead := ms[0].p.Leader()
		for _, m := range ms {
			if m.p.Leader() != lead {
				return ""
			}
		}
		return lead
	}
	waitFor(t, 30*time.Second, "three members ready and agreeing on a leader", func() bool {
		for _, m := range members {
			if !strings.Contains(m.p.Output(), "devetcd: ready on "+m.client) {
				return false
			}
		}
		return agreed(members) != ""
	})
	lead := agreed(members)
	var rest []*member
	for _, m := range members {
		if m.name == lead {
			if err := m.p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		} else {
			rest = append(rest, m)
		}
	}
	if len(rest) != 2 {
		t.Fatalf("leader %q is none of the members", lead)
	}
	killed := time.Now()
	waitFor(t, 15*time.Second, "a new leader after killing "+lead, func() bool {
		l := agreed(rest)
		return l != "" && l != lead
	})
	t.Logf("killed %s; %s leads after %s", lead, agreed(rest), time.Since(killed).Round(time.Millisecond))
}

func TestClientCertAuth(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	hostport := freePort(t)
	p := startDevetcd(t, "--data-dir", t.TempDir(), "--listen-client", "https://"+hostport, "--listen-peer", "http://"+freePort(t),
		"--cert-file", certs.ServerCertFile, "--key-file", certs.ServerKeyFile,
		"--trusted-ca-file", certs.CAFile, "--client-cert-auth")
	waitFor(t, 30*time.Second, "ready", func() bool { return strings.Contains(p.Output(), "devetcd: ready on https://"+hostport) })

	pem, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(certs.ClientCertFile, certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// A TLS 1.3 server judges the client certificate after the client's
	// handshake ends: the verdict comes with the first read.
	try := func(certs ...tls.Certificate) error {
		conn, err := tls.Dial("tcp", hostport, &tls.Config{RootCAs: pool, Certificates: certs})
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hostport)
		buf := make([]byte, 5)
		if _, err := conn.Read(buf); err != nil {
			return err
		}
		if string(buf) != "HTTP/" {
			return fmt.Errorf("answer %q", buf)
		}
		return nil
	}
	if err := try(pair); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if err := try(); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a client certificate: %v, want certificate required", err)
	}
}
