package subnet

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// WatchNetworkConfig calls onConfig with the network's config after every
// change (and once at the start) until ctx ends. A config that fails
// validation or is deleted is logged and not passed on: hosts keep the last
// good one rather than tearing down a working network.
func (c *Client) WatchNetworkConfig(ctx context.Context, network string, onConfig func(netconf.Config)) {
	key := c.keys.Config(network)
	listAndFollow(ctx, func() error {
		resp, err := c.cli.Get(ctx, key)
		if err != nil {
			c.log.Warn("read network config failed; retrying", "key", key, "err", err)
			return err
		}
		if len(resp.Kvs) > 0 {
			c.deliverConfig(key, resp.Kvs[0].Value, onConfig)
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		for wr := range c.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					c.log.Error("network config was deleted; keeping the last one", "key", key)
					continue
				}
				c.deliverConfig(key, ev.Kv.Value, onConfig)
			}
		}
		return errors.New("config watch closed")
	}, time.Now)
}

func (c *Client) deliverConfig(key string, value []byte, onConfig func(netconf.Config)) {
	cfg, err := netconf.Parse(value)
	if err != nil {
		c.log.Error("ignoring invalid network config; keeping the last good one", "key", key, "err", err)
		return
	}
	onConfig(cfg)
}
