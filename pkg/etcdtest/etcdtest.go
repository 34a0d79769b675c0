// Package etcdtest runs a real, single-member etcd server in-process
// (go.etcd.io/etcd/server/v3/embed) for tests and for the demo's fabric
// namespace. It is never a fake of the etcd API: the server is the same code
// a production cluster runs, only with one member and a throwaway data dir.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	clientURL string
}

// Options configure Start. Zero values pick free loopback ports.
type Options struct {
	// DataDir holds the member's data; it must be writable.
	DataDir string
	// ClientURL is the URL clients connect to, e.g. http://198.18.0.1:2379.
	ClientURL string
	// PeerURL is the raft peer URL; it must differ from ClientURL.
	PeerURL string
	// LogLevel is etcd's zap level; "error" keeps test output readable.
	LogLevel string
}

// ReadyTimeout bounds how long Start waits for the member to serve.
const ReadyTimeout = 30 * time.Second

// Start launches a member and waits until it serves clients.
func Start(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("etcdtest: DataDir is required")
	}
	var err error
	if opts.ClientURL == "" {
		if opts.ClientURL, err = freeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	if opts.PeerURL == "" {
		if opts.PeerURL, err = freeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "error"
	}
	curl, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: client URL %q: %w", opts.ClientURL, err)
	}
	purl, err := url.Parse(opts.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: peer URL %q: %w", opts.PeerURL, err)
	}

	cfg := embed.NewConfig()
	cfg.Name = "overlay-dev"
	cfg.Dir = opts.DataDir
	cfg.LogLevel = opts.LogLevel
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A throwaway member: fsync buys nothing and costs tens of ms per write.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start etcd on %s: %w", opts.ClientURL, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdtest: etcd failed before ready: %w", err)
	case <-time.After(ReadyTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcdtest: etcd not ready after %s", ReadyTimeout)
	}
	return &Server{etcd: e, clientURL: opts.ClientURL}, nil
}

// New starts a member for a test and stops it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Endpoints returns the client URLs to pass to an etcd client.
func (s *Server) Endpoints() []string { return []string{s.clientURL} }

// Err reports a fatal server error (the channel from embed).
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member and releases its ports.
func (s *Server) Close() { s.etcd.Close() }

func freeLoopbackURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcdtest: find a free port: %w", err)
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}
