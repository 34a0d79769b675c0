// Package etcdtest runs a real etcd server in-process
// (go.etcd.io/etcd/server/v3/embed) for tests and for the demo's fabric
// namespace. It is never a fake of the etcd API: the server is the same code
// a production cluster runs, only with a throwaway data dir and fsync off.
//
// Start runs one member; with Options.Name and Options.InitialCluster several
// members (in one process or in several devetcd processes) form one cluster,
// and StartCluster does that in-process for fault tests. Options.CertFile and
// friends make the client URL serve HTTPS and, with ClientCertAuth, require
// client certificates; WriteCerts generates the certificates.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	name      string
	clientURL string
	peerURL   string

	mu      sync.Mutex
	stopped bool
	// stopping silences the errors etcd logs about its own listeners
	// closing, which Close and Kill cause.
	stopping *atomic.Bool
}

// DefaultName is the member name when Options.Name is empty.
const DefaultName = "overlay-dev"

// Options configure Start. Zero values pick free loopback ports and a
// single-member cluster.
type Options struct {
	// DataDir holds the member's data; it must be writable.
	DataDir string
	// ClientURL is the URL clients connect to, e.g. http://198.18.0.1:2379,
	// or https://… with CertFile and KeyFile.
	ClientURL string
	// PeerURL is the raft peer URL (always plain http); it must differ from
	// ClientURL.
	PeerURL string
	// LogLevel is etcd's zap level; "error" keeps test output readable.
	LogLevel string

	// Name is the member's name (DefaultName if empty).
	Name string
	// InitialCluster lists every member of a new cluster as
	// name=peerURL,name=peerURL,… (etcd's --initial-cluster). Empty means a
	// single-member cluster of this member. Every member must be given the
	// same list, and a member only serves once a majority has started.
	InitialCluster string

	// CertFile and KeyFile are the server's certificate and key for the
	// client URL, which must then be https://.
	CertFile, KeyFile string
	// TrustedCAFile is the CA that client certificates must be signed by.
	TrustedCAFile string
	// ClientCertAuth makes etcd require a client certificate signed by
	// TrustedCAFile on every client connection.
	ClientCertAuth bool
}

// ReadyTimeout bounds how long Start waits for the member to serve.
const ReadyTimeout = 30 * time.Second

// Start launches a member and waits until it serves clients. A member of a
// multi-member cluster serves only once a majority of InitialCluster runs,
// so start the others concurrently (or use StartCluster).
func Start(opts Options) (*Server, error) {
	s, err := launch(opts)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts the member without waiting for it to be ready. Ports it
// picks itself are picked again if another process takes one before etcd
// binds it.
func launch(opts Options) (*Server, error) {
	for attempt := 1; ; attempt++ {
		o := opts
		var picked []string
		if o.ClientURL == "" {
			scheme := "http"
			if o.CertFile != "" || o.KeyFile != "" {
				scheme = "https"
			}
			u, err := pickURL(scheme)
			if err != nil {
				return nil, err
			}
			o.ClientURL, picked = u, append(picked, u)
		}
		if o.PeerURL == "" {
			u, err := pickURL("http")
			if err != nil {
				return nil, err
			}
			o.PeerURL, picked = u, append(picked, u)
		}
		s, err := launchOnce(o)
		if err != nil && attempt < portAttempts && takenPort(err, picked) {
			continue
		}
		return s, err
	}
}

// portAttempts bounds how often launch and StartCluster pick new ports.
const portAttempts = 5

// pickURL returns a URL on a loopback port that is free right now.
var pickURL = freeLoopbackURL

// takenPort reports whether err is etcd failing to bind one of the URLs.
func takenPort(err error, urls []string) bool {
	if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
		return false
	}
	for _, u := range urls {
		if i := strings.Index(u, "://"); i >= 0 && strings.Contains(err.Error(), u[i+3:]) {
			return true
		}
	}
	return false
}

func launchOnce(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("etcdtest: DataDir is required")
	}
	tls := opts.CertFile != "" || opts.KeyFile != ""
	if tls && (opts.CertFile == "" || opts.KeyFile == "") {
		return nil, errors.New("etcdtest: give both CertFile and KeyFile, or neither")
	}
	if opts.ClientCertAuth && opts.TrustedCAFile == "" {
		return nil, errors.New("etcdtest: ClientCertAuth needs TrustedCAFile (the CA client certificates are signed by)")
	}
	if opts.TrustedCAFile != "" && !tls {
		return nil, errors.New("etcdtest: TrustedCAFile needs CertFile and KeyFile (client certificates only exist over TLS)")
	}
	if opts.ClientURL == "" || opts.PeerURL == "" {
		return nil, errors.New("etcdtest: ClientURL and PeerURL are required")
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "error"
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	curl, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: client URL %q: %w", opts.ClientURL, err)
	}
	if tls != (curl.Scheme == "https") {
		return nil, fmt.Errorf("etcdtest: client URL %s: use https:// with a certificate and key, http:// without", opts.ClientURL)
	}
	purl, err := url.Parse(opts.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: peer URL %q: %w", opts.PeerURL, err)
	}

	cfg := embed.NewConfig()
	cfg.Name = opts.Name
	cfg.Dir = opts.DataDir
	cfg.LogLevel = opts.LogLevel
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = opts.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	cfg.ClientTLSInfo.CertFile = opts.CertFile
	cfg.ClientTLSInfo.KeyFile = opts.KeyFile
	cfg.ClientTLSInfo.TrustedCAFile = opts.TrustedCAFile
	cfg.ClientTLSInfo.ClientCertAuth = opts.ClientCertAuth
	// A throwaway member: fsync buys nothing and costs tens of ms per write.
	cfg.UnsafeNoFsync = true
	stopping := new(atomic.Bool)
	logCfg := logutil.DefaultZapLoggerConfig
	logCfg.Level = zap.NewAtomicLevelAt(logutil.ConvertToZapLevel(opts.LogLevel))
	lg, err := logCfg.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietClose{c, stopping} }))
	if err != nil {
		return nil, fmt.Errorf("etcdtest: etcd logger: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start etcd member %s on %s: %w", opts.Name, opts.ClientURL, err)
	}
	return &Server{etcd: e, name: opts.Name, clientURL: opts.ClientURL, peerURL: opts.PeerURL, stopping: stopping}, nil
}

func (s *Server) waitReady() error {
	e := s.etcd
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		s.Close()
		return fmt.Errorf("etcdtest: etcd member %s failed before ready: %w", s.name, err)
	case <-time.After(ReadyTimeout):
		s.Kill()
		return fmt.Errorf("etcdtest: etcd member %s not ready after %s (a member of a cluster needs a majority of its members running)", s.name, ReadyTimeout)
	}
}

// New starts a member for a test and stops it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	return NewWith(t, Options{})
}

// NewWith starts a member with opts for a test (DataDir defaults to a temp
// dir of the test) and stops it when the test ends.
func NewWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewTLS starts a member for a test whose client URL serves HTTPS with the
// server certificate of certs; with requireClientCert it accepts only
// clients presenting a certificate signed by certs.CAFile.
func NewTLS(t testing.TB, certs *Certs, requireClientCert bool) *Server {
	t.Helper()
	opts := Options{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}
	if requireClientCert {
		opts.TrustedCAFile, opts.ClientCertAuth = certs.CAFile, true
	}
	return NewWith(t, opts)
}

// Endpoints returns the client URLs to pass to an etcd client.
func (s *Server) Endpoints() []string { return []string{s.clientURL} }

// ClientURL is the member's client URL.
func (s *Server) ClientURL() string { return s.clientURL }

// PeerURL is the member's raft peer URL.
func (s *Server) PeerURL() string { return s.peerURL }

// Name is the member's name.
func (s *Server) Name() string { return s.name }

// ID is the member's ID in the cluster (what etcd's Status calls member_id).
func (s *Server) ID() uint64 { return uint64(s.etcd.Server.MemberID()) }

// LeaderID is the ID of the member this member believes leads the cluster:
// 0 while it knows of no leader or once it is stopped.
func (s *Server) LeaderID() uint64 {
	if s.Stopped() {
		return 0
	}
	return s.etcd.Server.Lead()
}

// IsLeader reports whether this running member is the cluster's leader.
func (s *Server) IsLeader() bool {
	lead := s.LeaderID()
	return lead != 0 && lead == s.ID()
}

// LeaderName is the name of the member this member believes leads the
// cluster, or "" while it knows of none.
func (s *Server) LeaderName() string {
	lead := s.LeaderID()
	if lead == 0 {
		return ""
	}
	m := s.etcd.Server.Cluster().Member(types.ID(lead))
	if m == nil {
		return ""
	}
	return m.Name
}

// Err reports a fatal server error (the channel from embed).
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Stopped reports whether Close or Kill was called.
func (s *Server) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// Close stops the member gracefully and releases its ports: a leader first
// hands leadership to another member, as etcd does on SIGTERM. Calling it
// again (or after Kill) does nothing.
func (s *Server) Close() {
	if s.markStopped() {
		s.etcd.Close()
	}
}

// Kill stops the member abruptly, like SIGKILL of an etcd process: raft
// stops at once, without handing leadership over, so the other members only
// elect a new leader after their election timeout. Then it releases the
// ports. Calling it again (or after Close) does nothing.
func (s *Server) Kill() {
	if s.markStopped() {
		s.etcd.Server.HardStop()
		s.etcd.Close()
	}
}

func (s *Server) markStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.stopped = true
	s.stopping.Store(true)
	return true
}

// quietClose drops the error etcd logs for each of its listeners when they
// close, once the member is being stopped on purpose.
type quietClose struct {
	zapcore.Core
	stopping *atomic.Bool
}

func (q quietClose) With(fields []zapcore.Field) zapcore.Core {
	return quietClose{q.Core.With(fields), q.stopping}
}

func (q quietClose) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if q.stopping.Load() && ent.Message == "setting up serving from embedded etcd failed." {
		return ce
	}
	return q.Core.Check(ent, ce)
}

func freeLoopbackURL(scheme string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcdtest: find a free port: %w", err)
	}
	defer l.Close()
	return scheme + "://" + l.Addr().String(), nil
}
