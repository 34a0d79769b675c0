package subnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// ClientConfig says how to reach etcd.
type ClientConfig struct {
	Endpoints []string
	// Prefix is the key prefix (default DefaultPrefix).
	Prefix string
	// CAFile, CertFile and KeyFile enable TLS (client certs when both Cert and Key are set).
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds the first contact with etcd.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Client is a connection to the subnet map.
type Client struct {
	cli   *clientv3.Client
	keys  Keys
	log   *slog.Logger
	stats *stats
}

// DefaultEndpoints is the --etcd-endpoints default: an etcd on this host.
const DefaultEndpoints = "http://127.0.0.1:2379"

// ParseEndpoints splits a comma-separated list of etcd client URLs (the
// --etcd-endpoints flag), dropping blanks around and between entries.
func ParseEndpoints(list string) []string {
	var eps []string
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

// reconnectParams bound gRPC's wait between attempts to reach an etcd
// member that went away. gRPC's default grows to two minutes, so after a
// long etcd outage a host would notice etcd's return only tens of seconds
// late; every lease renewal, watch and re-lease waits on that connection.
func reconnectParams() grpc.ConnectParams {
	return grpc.ConnectParams{
		Backoff:           grpcbackoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: 2 * time.Second,
	}
}

// ErrNoConfig means the network has no config in etcd yet.
var ErrNoConfig = errors.New("network config not found")

// Connect dials etcd and checks that it answers within DialTimeout, so an
// unreachable etcd is reported at start rather than as a hang later.
func Connect(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints given")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	st := newStats()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		Context:     ctx,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(reconnectParams()), grpc.WithChainUnaryInterceptor(st.interceptor())},
	})
	if err != nil {
		return nil, fmt.Errorf("create etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	probe, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	// On a TLS problem the etcd client only times out. Meanwhile find the
	// reason with handshakes of our own, and stop waiting as soon as every
	// TLS endpoint has failed for good.
	var verdict <-chan error
	if needsTLSProbe(cfg.Endpoints, tlsCfg) {
		ch := make(chan error, 1)
		verdict = ch
		go func() {
			all, err := probeTLS(probe, cfg, tlsCfg)
			if all {
				cancel()
			}
			ch <- err
		}()
	}
	// One key, not the prefix: counting every lease of every network
	// would cost each start half a millisecond at 10 000 hosts.
	if _, err := cli.Get(probe, cfg.Prefix+"/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if verdict != nil {
			if terr := <-verdict; terr != nil {
				return nil, terr
			}
		}
		return nil, fmt.Errorf("cannot reach etcd at %s within %s: %w", strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err)
	}
	return &Client{cli: cli, keys: Keys{Prefix: cfg.Prefix}, log: cfg.Logger, stats: st}, nil
}

// ErrTLS marks a TLS problem between this host and etcd: a certificate or key
// file, or etcd refusing (or failing) the handshake. The error's message
// already names the file or the endpoint and says what to do, so callers
// should not add a "check that etcd is running" hint to it.
var ErrTLS = errors.New("etcd TLS")

type tlsError struct{ msg string }

func (e *tlsError) Error() string        { return "etcd TLS: " + e.msg }
func (e *tlsError) Is(target error) bool { return target == ErrTLS }

func tlsErrorf(format string, args ...any) error {
	return &tlsError{msg: fmt.Sprintf(format, args...)}
}

// tlsConfig reads the CA, certificate and key files, checking each on its
// own so that a mistake is reported with the file and the flag it came
// from. It returns nil when no TLS flag is given.
func tlsConfig(cfg ClientConfig) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && cfg.KeyFile == "" {
		return nil, nil
	}
	for _, ep := range cfg.Endpoints {
		if u, err := url.Parse(ep); err == nil && (u.Scheme == "http" || u.Scheme == "unix") {
			return nil, tlsErrorf("endpoint %s is plain %s but --etcd-cafile/--etcd-certfile/--etcd-keyfile are given; write the endpoint as %ss://%s, or drop the TLS flags", ep, u.Scheme, u.Scheme, strings.TrimPrefix(ep, u.Scheme+"://"))
		}
	}
	switch {
	case cfg.CertFile != "" && cfg.KeyFile == "":
		return nil, tlsErrorf("--etcd-certfile %s is given without --etcd-keyfile; give both the client certificate and its private key, or neither", cfg.CertFile)
	case cfg.KeyFile != "" && cfg.CertFile == "":
		return nil, tlsErrorf("--etcd-keyfile %s is given without --etcd-certfile; give both the client certificate and its private key, or neither", cfg.KeyFile)
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		const what = "the CA certificate (PEM) that signed etcd's server certificate"
		data, err := readTLSFile("--etcd-cafile", cfg.CAFile, what)
		if err != nil {
			return nil, err
		}
		blocks := pemBlocks(data)
		if !hasBlock(blocks, "CERTIFICATE") {
			return nil, tlsErrorf("--etcd-cafile %s holds no PEM certificate (-----BEGIN CERTIFICATE-----); give %s", cfg.CAFile, what)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(data) {
			return nil, tlsErrorf("--etcd-cafile %s holds no certificate that parses; give %s", cfg.CAFile, what)
		}
	}
	if cfg.CertFile != "" {
		certPEM, err := readTLSFile("--etcd-certfile", cfg.CertFile, "the client certificate (PEM) for etcd")
		if err != nil {
			return nil, err
		}
		keyPEM, err := readTLSFile("--etcd-keyfile", cfg.KeyFile, "the private key (PEM) of the client certificate")
		if err != nil {
			return nil, err
		}
		if !hasBlock(pemBlocks(certPEM), "CERTIFICATE") {
			return nil, tlsErrorf("--etcd-certfile %s holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the client certificate (PEM) for etcd", cfg.CertFile)
		}
		keyBlocks := pemBlocks(keyPEM)
		if !hasBlock(keyBlocks, "PRIVATE KEY") {
			hint := ""
			if hasBlock(keyBlocks, "CERTIFICATE") {
				hint = " (it holds a certificate: are --etcd-certfile and --etcd-keyfile swapped?)"
			}
			return nil, tlsErrorf("--etcd-keyfile %s holds no PEM private key%s; give the private key (PEM) of the client certificate", cfg.KeyFile, hint)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			if strings.Contains(err.Error(), "does not match") {
				return nil, tlsErrorf("--etcd-keyfile %s is not the private key of the certificate in --etcd-certfile %s; give the key that belongs to that certificate", cfg.KeyFile, cfg.CertFile)
			}
			return nil, tlsErrorf("--etcd-certfile %s with --etcd-keyfile %s: %v; give a client certificate and its private key, both PEM", cfg.CertFile, cfg.KeyFile, err)
		}
		// Always present the certificate, even when it is not signed by a CA
		// etcd names in its request: then etcd says why it rejects it,
		// rather than a missing certificate.
		t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return t, nil
}

func readTLSFile(flag, path, what string) ([]byte, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, tlsErrorf("%s %s does not exist; give %s", flag, path, what)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return nil, tlsErrorf("%s %s cannot be read (%v); give %s", flag, path, err, what)
}

// pemBlocks returns the types of the PEM blocks in data.
func pemBlocks(data []byte) []string {
	var types []string
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return types
		}
		types = append(types, b.Type)
	}
}

// hasBlock reports whether a block type ends with suffix ("PRIVATE KEY"
// covers PKCS#8, "EC PRIVATE KEY" and "RSA PRIVATE KEY").
func hasBlock(types []string, suffix string) bool {
	for _, t := range types {
		if strings.HasSuffix(t, suffix) {
			return true
		}
	}
	return false
}

// needsTLSProbe reports whether the client will speak TLS to some endpoint:
// https:// always (with the system's CAs when no --etcd-cafile is given),
// a scheme-less host:port when TLS flags are given.
func needsTLSProbe(endpoints []string, tlsCfg *tls.Config) bool {
	for _, ep := range endpoints {
		if _, _, ok := tlsTarget(ep, tlsCfg); ok {
			return true
		}
	}
	return false
}

func tlsTarget(ep string, tlsCfg *tls.Config) (hostport, host string, ok bool) {
	hostport = ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			return "", "", false
		}
		hostport = u.Host
	} else if tlsCfg == nil {
		return "", "", false
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", "", false
	}
	return hostport, host, true
}

// probeTLS handshakes with every TLS endpoint at once, as the etcd client
// would. It reports whether every TLS endpoint failed for good, and the first
// endpoint's (in the given order) definite TLS failure, if any. An
// endpoint that does not answer or handshakes fine is no failure: the etcd
// client's own attempt decides then.
func probeTLS(ctx context.Context, cfg ClientConfig, tlsCfg *tls.Config) (bool, error) {
	type target struct{ ep, hostport, host string }
	var targets []target
	for _, ep := range cfg.Endpoints {
		if hp, h, ok := tlsTarget(ep, tlsCfg); ok {
			targets = append(targets, target{ep, hp, h})
		}
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() { errs[i] = probeEndpoint(ctx, cfg, tlsCfg, tg.ep, tg.hostport, tg.host) })
	}
	wg.Wait()
	var first error
	all := len(targets) > 0
	for _, err := range errs {
		if err == nil {
			all = false
		} else if first == nil {
			first = err
		}
	}
	return all, first
}

// probeEndpoint returns a definite TLS failure of one endpoint, or nil.
func probeEndpoint(ctx context.Context, cfg ClientConfig, tlsCfg *tls.Config, ep, hostport, host string) error {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if tlsCfg != nil {
		c = tlsCfg.Clone()
	}
	c.ServerName = host
	d := tls.Dialer{Config: c}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		// A plain-HTTP etcd hangs up on a ClientHello without a word.
		if errors.Is(err, io.EOF) && speaksPlainHTTP(ctx, hostport) {
			return tlsErrorf("%s: etcd does not speak TLS on this port; write the endpoint as http://%s, or enable TLS on etcd", ep, hostport)
		}
		return classifyTLS(cfg, ep, host, err)
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	// With TLS 1.3 the client's handshake ends before the server has checked
	// the client's certificate: its verdict comes with the first answer.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hostport)
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return classifyTLS(cfg, ep, host, err)
	}
	return nil
}

// speaksPlainHTTP reports whether hostport answers a plain HTTP request.
func speaksPlainHTTP(ctx context.Context, hostport string) bool {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return false
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hostport)
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	return err == nil && string(buf) == "HTTP/"
}

// classifyTLS turns a handshake error into a one-line ErrTLS that says what
// to change, or nil when err says nothing definite about TLS (refused,
// unreachable, timed out).
func classifyTLS(cfg ClientConfig, ep, host string, err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA):
		if cfg.CAFile == "" {
			return tlsErrorf("%s: etcd's certificate is not signed by a CA this host trusts; give --etcd-cafile the CA that signed etcd's server certificate", ep)
		}
		return tlsErrorf("%s: etcd's certificate is not signed by the CA in %s; give --etcd-cafile the CA that signed etcd's server certificate", ep, cfg.CAFile)
	case errors.As(err, &hostErr):
		names := append([]string{}, hostErr.Certificate.DNSNames...)
		for _, ip := range hostErr.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 {
			names = []string{"no host"}
		}
		return tlsErrorf("%s: etcd's certificate is not valid for %s (it names %s); use an endpoint the certificate names, or reissue etcd's certificate for %s", ep, host, strings.Join(names, ", "), host)
	case errors.As(err, &invalid):
		return tlsErrorf("%s: etcd's certificate is not valid (%s); renew etcd's server certificate, or check this host's clock", ep, strings.TrimPrefix(invalid.Error(), "x509: "))
	case errors.As(err, &record):
		return tlsErrorf("%s: etcd does not speak TLS on this port (%v); check the endpoint's port, or enable TLS on etcd", ep, err)
	case errors.As(err, &op) && op.Op == "remote error":
		// etcd sent a TLS alert: it refused our certificate, or our lack of one.
		if cfg.CertFile == "" {
			return tlsErrorf("%s: etcd requires a client certificate (%v); give --etcd-certfile and --etcd-keyfile, a certificate and key signed by a CA etcd trusts", ep, op.Err)
		}
		return tlsErrorf("%s: etcd rejected the client certificate in %s (%v); give --etcd-certfile a certificate signed by the CA etcd trusts for clients (etcd's --trusted-ca-file)", ep, cfg.CertFile, op.Err)
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return tlsErrorf("%s: etcd's certificate does not verify (%v); give --etcd-cafile the CA that signed etcd's server certificate", ep, verr.Err)
	}
	return nil
}

// Close releases the connection. It does not revoke held leases.
func (c *Client) Close() error { return c.cli.Close() }

// Keys returns the key layout in use.
func (c *Client) Keys() Keys { return c.keys }

// NetworkConfig reads and validates a network's config. A missing config
// yields ErrNoConfig.
func (c *Client) NetworkConfig(ctx context.Context, network string) (netconf.Config, error) {
	key := c.keys.Config(network)
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return netconf.Config{}, fmt.Errorf("read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return netconf.Config{}, fmt.Errorf("%s: %w", key, ErrNoConfig)
	}
	cfg, err := netconf.Parse(resp.Kvs[0].Value)
	if err != nil {
		return netconf.Config{}, fmt.Errorf("%s: %w", key, err)
	}
	return cfg, nil
}

// OtherNetworkConfigs reads the configs of every network but skip, by
// name, for the checks between networks (netconf.Config.CheckOthers).
// Configs that do not parse are left out: they serve no host.
//
// The networks' keys hold every lease and reservation of every network:
// listing them (even keys only) costs a start 7 ms at 10 000 hosts. The
// walk reads one key per network instead, at one revision: a network's
// first key, which is its config when it has one ("config" sorts before
// "reservations" and "subnets"), and then skips to the next network, whose
// keys sort after NAME0 ('0' follows '/').
func (c *Client) OtherNetworkConfigs(ctx context.Context, skip string) (map[string]netconf.Config, error) {
	prefix := c.keys.Networks()
	end := clientv3.GetPrefixRangeEnd(prefix)
	out := map[string]netconf.Config{}
	var rev int64 // 0: the first read's revision is not known yet
	for from := prefix; ; {
		resp, err := c.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithRev(rev))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		rev = resp.Header.Revision
		if len(resp.Kvs) == 0 {
			return out, nil
		}
		kv := resp.Kvs[0]
		name, _, ok := strings.Cut(string(kv.Key[len(prefix):]), "/")
		if !ok { // a key of no network's: step over it
			from = string(kv.Key) + "\x00"
			continue
		}
		from = prefix + name + "0"
		if name == skip {
			continue
		}
		value := kv.Value
		if string(kv.Key) != c.keys.Config(name) { // some other key sorts first
			got, err := c.cli.Get(ctx, c.keys.Config(name), clientv3.WithRev(rev))
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", c.keys.Config(name), err)
			}
			if len(got.Kvs) == 0 {
				continue // leases of a network without a config
			}
			value = got.Kvs[0].Value
		}
		if cfg, err := netconf.Parse(value); err == nil {
			out[name] = cfg
		}
	}
}

// CheckNetworkConfig reports why cfg cannot serve network: it clashes
// with another network (netconf.Config.CheckOthers), or its MTU override
// does not fit a member's underlay.
func (c *Client) CheckNetworkConfig(ctx context.Context, network string, cfg netconf.Config, leases []Lease) error {
	others, err := c.OtherNetworkConfigs(ctx, network)
	if err != nil {
		return err
	}
	if err := cfg.CheckOthers(others); err != nil {
		return fmt.Errorf("network %s: %w", network, err)
	}
	for _, l := range leases {
		if err := cfg.CheckUnderlay(l.Describe(), l.UnderlayMTU); err != nil {
			return fmt.Errorf("network %s: %w", network, err)
		}
	}
	return nil
}

// WaitNetworkConfig returns the network's config, waiting for it to be
// written if it does not exist yet. An invalid config is returned as an error
// at once: waiting would not fix it.
func (c *Client) WaitNetworkConfig(ctx context.Context, network string, waiting func()) (netconf.Config, error) {
	key := c.keys.Config(network)
	for {
		resp, err := c.cli.Get(ctx, key)
		if err != nil {
			return netconf.Config{}, fmt.Errorf("read %s: %w", key, err)
		}
		if len(resp.Kvs) > 0 {
			cfg, err := netconf.Parse(resp.Kvs[0].Value)
			if err != nil {
				return netconf.Config{}, fmt.Errorf("%s: %w", key, err)
			}
			return cfg, nil
		}
		if waiting != nil {
			waiting()
			waiting = nil
		}
		if err := c.waitForPut(ctx, key, resp.Header.Revision+1); err != nil {
			return netconf.Config{}, err
		}
	}
}

func (c *Client) waitForPut(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range c.cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if resp.Err() != nil {
			return nil // re-read; the loop in the caller decides
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut {
				return nil
			}
		}
	}
	return ctx.Err()
}

// SetNetworkConfig validates and stores a network's config.
func (c *Client) SetNetworkConfig(ctx context.Context, network string, cfg netconf.Config) error {
	if err := netconf.ValidateName(network); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	data, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("encode network config: %w", err)
	}
	key := c.keys.Config(network)
	for range raceRetries {
		leases, rev, err := c.Leases(ctx, network)
		if err != nil {
			return err
		}
		if err := StrandedBy(cfg, leases); err != nil {
			return fmt.Errorf("network %s: %w", network, err)
		}
		if err := c.CheckNetworkConfig(ctx, network, cfg, leases); err != nil {
			return err
		}
		reserved, err := c.reservationsAt(ctx, network, rev)
		if err != nil {
			return err
		}
		if err := strandedReservation(cfg, reserved, leases); err != nil {
			return fmt.Errorf("network %s: %w", network, err)
		}
		// Written only if no lease or reservation changed since the check.
		resp, err := c.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(c.keys.Subnets(network)), "<", rev+1).WithPrefix(),
			clientv3.Compare(clientv3.ModRevision(c.keys.Reservations(network)), "<", rev+1).WithPrefix(),
		).Then(clientv3.OpPut(key, string(data))).Commit()
		if err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("write %s: leases kept changing while checking them; retry", key)
}

// reservationsAt lists the network's quarantine reservations at revision rev.
func (c *Client) reservationsAt(ctx context.Context, network string, rev int64) (map[netip.Prefix]reservation, error) {
	prefix := c.keys.Reservations(network)
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return parseReservations(prefix, resp.Kvs), nil
}

// Leases lists a network's valid leases and the revision of the read. Invalid
// records are logged and left out.
func (c *Client) Leases(ctx context.Context, network string) ([]Lease, int64, error) {
	prefix := c.keys.Subnets(network)
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	leases := make([]Lease, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		l, err := c.parseLease(network, kv.Key, kv.Value)
		if err != nil {
			c.log.Warn("skipping invalid lease", "key", string(kv.Key), "err", err)
			continue
		}
		l.ModRevision, l.CreateRevision, l.EtcdLease = kv.ModRevision, kv.CreateRevision, kv.Lease
		leases = append(leases, l)
	}
	return leases, resp.Header.Revision, nil
}

// LeaseTTL is what etcd says of one etcd lease.
type LeaseTTL struct {
	// Left is the time until the lease expires unless it is renewed, in
	// etcd's whole seconds (0 in its last second and once expired).
	Left time.Duration
	// Granted is the TTL the lease was granted with; 0 when it has expired.
	Granted time.Duration
}

// Expired reports whether etcd no longer knows the lease.
func (t LeaseTTL) Expired() bool { return t.Granted == 0 }

// leaseTTLQueries bounds the TimeToLive requests in flight: one per lease,
// so a network of thousands of hosts is read in a few hundred round trips
// without flooding etcd.
const leaseTTLQueries = 32

// LeaseTTLs asks etcd how long each etcd lease (Lease.EtcdLease) has left.
// A lease that expired since it was listed is in the map as expired, not
// an error; ID 0 (a key bound to no lease) and repeats are skipped.
func (c *Client) LeaseTTLs(ctx context.Context, ids []int64) (map[int64]LeaseTTL, error) {
	var todo []int64
	out := make(map[int64]LeaseTTL, len(ids))
	for _, id := range ids {
		if _, seen := out[id]; id != 0 && !seen {
			out[id] = LeaseTTL{}
			todo = append(todo, id)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		slots = make(chan struct{}, leaseTTLQueries)
	)
	for _, id := range todo {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			resp, err := c.cli.TimeToLive(ctx, clientv3.LeaseID(id))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if first == nil {
					first = fmt.Errorf("read TTL of etcd lease %x: %w", id, err)
					cancel()
				}
			case resp.TTL >= 0: // etcd answers -1 for a lease it no longer has
				out[id] = LeaseTTL{Left: time.Duration(resp.TTL) * time.Second, Granted: time.Duration(resp.GrantedTTL) * time.Second}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}

func (c *Client) parseLease(network string, key, value []byte) (Lease, error) {
	s, err := c.keys.ParseSubnetKey(network, string(key))
	if err != nil {
		return Lease{}, err
	}
	rec, err := decodeRecord(value)
	if err != nil {
		return Lease{}, err
	}
	return Lease{Subnet: s, Record: rec}, nil
}

// DeleteLease removes a lease key and its quarantine reservation (an
// operator's eviction). It reports whether either existed.
func (c *Client) DeleteLease(ctx context.Context, network string, s netip.Prefix) (bool, error) {
	key := c.keys.Subnet(network, s)
	// The reservation goes too: evicting is the operator saying the host is
	// gone for good, so its subnet must not stay quarantined. A live host
	// puts both back.
	resp, err := c.cli.Txn(ctx).Then(clientv3.OpDelete(key), clientv3.OpDelete(c.keys.Reservation(network, s))).Commit()
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	deleted := resp.Responses[0].GetResponseDeleteRange().Deleted + resp.Responses[1].GetResponseDeleteRange().Deleted
	return deleted > 0, nil
}
