package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

// lockedBuffer is an io.Writer the server's goroutines and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runCmd runs demo-echo with args and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut lockedBuffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// startServe runs `demo-echo serve args...` until the test ends.
func startServe(t *testing.T, args ...string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan int)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), &out, &out) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d:\n%s", code, out.String())
		}
	})
	return &out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkAnswer checks call's output: the local address it reports is the
// caller address the server saw.
func checkAnswer(t *testing.T, out, name, addr string) {
	t.Helper()
	var local string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "called "+addr+" from "); ok {
			local = rest
		}
	}
	want := fmt.Sprintf("hello from %s at %s; you are %s\n", name, addr, local)
	if local == "" || !strings.HasSuffix(out, want) {
		t.Fatalf("call output does not end in %q:\n%s", want, out)
	}
}

func TestServeAndCall(t *testing.T) {
	addr := freeAddr(t)
	log := startServe(t, "--listen", addr, "--name", "svc")
	code, out, errOut := runCmd(context.Background(), "call", "--addr", addr)
	if code != 0 {
		t.Fatalf("call exited %d: %s", code, errOut)
	}
	checkAnswer(t, out, "svc", addr)
	if !strings.Contains(log.String(), "svc serving on "+addr) {
		t.Fatalf("serve log: %q", log.String())
	}
}

func TestCallFailsWithOneLine(t *testing.T) {
	addr := freeAddr(t) // closed again: nothing listens there
	start := time.Now()
	code, _, errOut := runCmd(context.Background(), "call", "--addr", addr, "--retry", "500ms")
	if code != 1 || !strings.HasPrefix(errOut, "demo-echo: call "+addr+": ") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("call to a closed port: exit %d, stderr %q", code, errOut)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("call gave up after %s with --retry 500ms", d)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"bogus"},
		{"serve"},
		{"serve", "--listen", "127.0.0.1:0", "--key", "k"},
		{"call"},
		{"call", "--addr", "127.0.0.1:1", "--registry", "http://127.0.0.1:1", "--key", "k"},
		{"call", "--registry", "http://127.0.0.1:1"},
		{"call", "--addr", "127.0.0.1:1", "extra"},
	} {
		if code, _, errOut := runCmd(context.Background(), args...); code != 2 || !strings.Contains(errOut, "usage:") {
			t.Errorf("%q: exit %d, stderr %q; want 2 with the usage", args, code, errOut)
		}
	}
}

// The registry calls against a real etcd, checked with etcd's own client
// (tests may import it): serve stores its address under the key as plain
// bytes, and call finds what etcd holds.
func TestRegistry(t *testing.T) {
	etcd := etcdtest.New(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const key = "/demo/registry/echo"

	addr := freeAddr(t)
	log := startServe(t, "--listen", addr, "--registry", etcd.ClientURL(), "--key", key)
	var got string
	for got != addr {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v (serve: %s)", key, err, log.String())
		}
		if len(resp.Kvs) == 1 {
			got = string(resp.Kvs[0].Value)
			if got != addr {
				t.Fatalf("etcd holds %q under %s, want %q", got, key, addr)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, out, errOut := runCmd(ctx, "call", "--registry", etcd.ClientURL(), "--key", key)
	if code != 0 {
		t.Fatalf("call exited %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "looked up "+key+" -> "+addr+"\n") {
		t.Fatalf("call output: %q", out)
	}
	checkAnswer(t, out, "echo", addr)

	// A value written by etcd's client is what call looks up.
	if _, err := cli.Put(ctx, "/demo/other", "198.18.9.9:1"); err != nil {
		t.Fatal(err)
	}
	if v, err := lookup(ctx, etcd.ClientURL(), "/demo/other"); err != nil || v != "198.18.9.9:1" {
		t.Fatalf("lookup /demo/other = %q, %v", v, err)
	}

	code, _, errOut = runCmd(ctx, "call", "--registry", etcd.ClientURL(), "--key", "/demo/missing", "--retry", "0s")
	if code != 1 || !strings.Contains(errOut, "look up /demo/missing at "+etcd.ClientURL()+": nothing registered") {
		t.Fatalf("missing key: exit %d, stderr %q", code, errOut)
	}
	if _, err := cli.Put(ctx, "/demo/bad", "not-an-address"); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd(ctx, "call", "--registry", etcd.ClientURL(), "--key", "/demo/bad")
	if code != 1 || !strings.Contains(errOut, `"not-an-address" is not IP:PORT`) {
		t.Fatalf("bad registered value: exit %d, stderr %q", code, errOut)
	}
}
