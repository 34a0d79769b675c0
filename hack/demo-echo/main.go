// Command demo-echo is the tiny service and client of `make demo`'s edge
// host part: a TCP echo that tells each caller the address it saw, and a
// client that finds the service in a registry (a key in etcd, as a Dubbo
// provider registers in ZooKeeper) and calls it.
//
//	demo-echo serve --listen IP:PORT [--name NAME] [--registry URL --key KEY]
//	demo-echo call (--addr IP:PORT | --registry URL --key KEY) [--retry 10s]
//
// The server answers every connection with one line and closes it:
//
//	hello from NAME at IP:PORT; you are CALLER_IP:PORT
//
// With --registry, serve first listens, then stores its listen address under
// KEY. The registry is etcd's v3 JSON gateway (POST URL/v3/kv/put and
// /v3/kv/range), reached with net/http: only pkg/subnet imports the etcd
// client. Nothing is deregistered on exit; the demo's etcd goes with it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

const usage = `usage:
  demo-echo serve --listen IP:PORT [--name NAME] [--registry URL --key KEY]
  demo-echo call (--addr IP:PORT | --registry URL --key KEY) [--retry 10s] [--timeout 3s]`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one subcommand and returns the exit code: 0 done, 1 failed,
// 2 bad usage. Errors are one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout)
	case "call":
		err = cmdCall(ctx, args[1:], stdout)
	default:
		err = usageError(fmt.Sprintf("unknown subcommand %q", args[0]))
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stderr, usage)
		return 2
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "demo-echo: %s\n%s\n", ue, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "demo-echo:", err)
		return 1
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(fs.Name() + ": " + err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0)))
	}
	return nil
}

// --- serve -------------------------------------------------------------------

func cmdServe(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("serve")
	listen := fs.String("listen", "", "IP:PORT to listen on (required)")
	name := fs.String("name", "echo", "name the server gives in its answers")
	registry := fs.String("registry", "", "etcd client URL to register the listen address at (with --key)")
	key := fs.String("key", "", "registry key to store the listen address under")
	retry := fs.Duration("retry", 10*time.Second, "how long to keep trying to register")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *listen == "" {
		return usageError("serve: --listen IP:PORT is required")
	}
	if (*registry == "") != (*key == "") {
		return usageError("serve: give --registry and --key together")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "%s serving on %s\n", *name, addr)
	if *registry != "" {
		err := retrying(ctx, *retry, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			return register(ctx, *registry, *key, addr)
		})
		if err != nil {
			return fmt.Errorf("register %s at %s: %w", *key, *registry, err)
		}
		fmt.Fprintf(stdout, "registered %s -> %s at %s\n", *key, addr, *registry)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	return serve(ln, *name, stdout)
}

// serve answers every connection on ln until ln is closed, logging each
// caller to log.
func serve(ln net.Listener, name string, log io.Writer) error {
	var mu sync.Mutex
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "hello from %s at %s; you are %s\n", name, c.LocalAddr(), c.RemoteAddr())
			mu.Lock()
			fmt.Fprintf(log, "answered %s\n", c.RemoteAddr())
			mu.Unlock()
		}()
	}
}

// --- call --------------------------------------------------------------------

func cmdCall(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("call")
	addr := fs.String("addr", "", "IP:PORT of the service")
	registry := fs.String("registry", "", "etcd client URL to look the service up at (with --key)")
	key := fs.String("key", "", "registry key the service is registered under")
	retry := fs.Duration("retry", 10*time.Second, "how long to keep trying (routes are programmed asynchronously)")
	timeout := fs.Duration("timeout", 3*time.Second, "timeout of each attempt")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*addr == "") == (*registry == "" && *key == "") || (*registry == "") != (*key == "") {
		return usageError("call: give either --addr or --registry with --key")
	}
	target := *addr
	if *registry != "" {
		err := retrying(ctx, *retry, func(ctx context.Context) (err error) {
			ctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			target, err = lookup(ctx, *registry, *key)
			return err
		})
		if err != nil {
			return fmt.Errorf("look up %s at %s: %w", *key, *registry, err)
		}
		fmt.Fprintf(stdout, "looked up %s -> %s\n", *key, target)
	}
	if _, err := netip.ParseAddrPort(target); err != nil {
		return fmt.Errorf("service address %q is not IP:PORT", target)
	}
	var local, answer string
	err := retrying(ctx, *retry, func(ctx context.Context) (err error) {
		local, answer, err = call(ctx, target, *timeout)
		return err
	})
	if err != nil {
		return fmt.Errorf("call %s: %w", target, err)
	}
	fmt.Fprintf(stdout, "called %s from %s\n%s\n", target, local, answer)
	return nil
}

// call connects to addr and returns the local address it used and the
// server's one-line answer.
func call(ctx context.Context, addr string, timeout time.Duration) (local, answer string, err error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read answer: %w", err)
	}
	return c.LocalAddr().String(), strings.TrimSuffix(line, "\n"), nil
}

// retrying runs fn until it succeeds, ctx ends or d has passed (at least
// one attempt); the error is fn's last, with how long it was tried.
func retrying(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	deadline := time.Now().Add(d)
	for attempts := 1; ; attempts++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			if attempts > 1 {
				return fmt.Errorf("%w (%d attempts in %s)", err, attempts, d)
			}
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// --- registry: etcd's v3 JSON gateway ------------------------------------------

// kv is a key-value pair as the gateway takes and gives it: []byte fields
// are base64 in JSON, as the gateway wants.
type kv struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// register stores value under key.
func register(ctx context.Context, registry, key, value string) error {
	return gateway(ctx, registry, "/v3/kv/put", kv{Key: []byte(key), Value: []byte(value)}, &struct{}{})
}

// lookup returns the value stored under key.
func lookup(ctx context.Context, registry, key string) (string, error) {
	var out struct {
		Kvs []kv `json:"kvs"`
	}
	if err := gateway(ctx, registry, "/v3/kv/range", kv{Key: []byte(key)}, &out); err != nil {
		return "", err
	}
	if len(out.Kvs) == 0 {
		return "", errors.New("nothing registered under the key")
	}
	return string(out.Kvs[0].Value), nil
}

// gateway POSTs in as JSON to registry+path and decodes the answer into out.
func gateway(ctx context.Context, registry, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(registry, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: answer %q: %w", path, data, err)
	}
	return nil
}
