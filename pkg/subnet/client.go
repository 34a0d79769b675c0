package subnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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
	cli  *clientv3.Client
	keys Keys
	log  *slog.Logger
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
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("create etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	probe, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(probe, cfg.Prefix+"/", clientv3.WithCountOnly(), clientv3.WithPrefix()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("cannot reach etcd at %s within %s: %w", strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err)
	}
	return &Client{cli: cli, keys: Keys{Prefix: cfg.Prefix}, log: cfg.Logger}, nil
}

func tlsConfig(cfg ClientConfig) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && cfg.KeyFile == "" {
		return nil, nil
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("etcd TLS: give both --etcd-certfile and --etcd-keyfile, or neither")
	}
	info := transport.TLSInfo{TrustedCAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	t, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS config: %w", err)
	}
	return t, nil
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
	if _, err := c.cli.Put(ctx, key, string(data)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
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
		l.ModRevision, l.EtcdLease = kv.ModRevision, kv.Lease
		leases = append(leases, l)
	}
	return leases, resp.Header.Revision, nil
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

// DeleteLease removes a lease key (an operator's eviction). It reports
// whether the key existed.
func (c *Client) DeleteLease(ctx context.Context, network string, s netip.Prefix) (bool, error) {
	key := c.keys.Subnet(network, s)
	resp, err := c.cli.Delete(ctx, key)
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	return resp.Deleted > 0, nil
}
