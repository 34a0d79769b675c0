package subnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// AcquireRequest says what a host wants to lease.
type AcquireRequest struct {
	Network string
	Config  netconf.Config
	// Record is the value to publish; its HostID identifies this host.
	Record Record
	// Previous is the subnet this host held before (from its state dir), if any.
	Previous netip.Prefix
	// TTL of the etcd lease; the key vanishes this long after the host stops
	// renewing it.
	TTL time.Duration
}

// ErrNetworkFull means every subnet of the network is leased.
var ErrNetworkFull = errors.New("no free subnet")

// ErrSubnetTaken means another host now holds the subnet this host had.
var ErrSubnetTaken = errors.New("subnet taken by another host")

// raceRetries bounds how often Acquire re-reads the map after losing a race
// for a subnet to another host.
const raceRetries = 10

// HeldLease is a subnet this host holds. Its etcd lease is kept alive until
// Stop or until etcd stops accepting renewals, which closes Done.
type HeldLease struct {
	Subnet netip.Prefix

	c       *Client
	key     string
	value   string
	id      clientv3.LeaseID
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once
}

// Acquire leases a subnet for this host: the one it already holds (found by
// host ID), else its previous subnet if still free, else a random free one.
func (c *Client) Acquire(ctx context.Context, req AcquireRequest) (*HeldLease, error) {
	value, err := encodeRecord(req.Record)
	if err != nil {
		return nil, fmt.Errorf("encode lease record: %w", err)
	}
	ttl := int64(req.TTL / time.Second)
	if ttl < 1 {
		return nil, fmt.Errorf("lease TTL %s is shorter than etcd's 1s granularity", req.TTL)
	}
	grant, err := c.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("grant etcd lease: %w", err)
	}
	for range raceRetries {
		s, won, err := c.tryAcquire(ctx, req, value, grant.ID)
		if err != nil {
			c.revoke(grant.ID)
			return nil, err
		}
		if won {
			return c.hold(ctx, req.Network, s, value, grant.ID)
		}
	}
	c.revoke(grant.ID)
	return nil, fmt.Errorf("acquire subnet in network %s: lost the race %d times; retry", req.Network, raceRetries)
}

// tryAcquire makes one attempt; won is false when another host changed the
// map between our read and our write.
func (c *Client) tryAcquire(ctx context.Context, req AcquireRequest, value string, id clientv3.LeaseID) (netip.Prefix, bool, error) {
	taken, err := c.occupied(ctx, req.Network)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	if own, ok := ownLease(taken, req); ok {
		key := c.keys.Subnet(req.Network, own.Subnet)
		won, err := c.txnPut(ctx, clientv3.Compare(clientv3.ModRevision(key), "=", own.ModRevision), key, value, id)
		return own.Subnet, won, err
	}
	s, err := pickFree(req, taken)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	key := c.keys.Subnet(req.Network, s)
	won, err := c.txnPut(ctx, clientv3.Compare(clientv3.Version(key), "=", 0), key, value, id)
	return s, won, err
}

// occupiedLease is a key in the subnet map; Record is zero when the value
// is unreadable (the subnet is still taken).
type occupiedLease struct {
	Subnet      netip.Prefix
	HostID      string
	ModRevision int64
}

func (c *Client) occupied(ctx context.Context, network string) (map[netip.Prefix]occupiedLease, error) {
	prefix := c.keys.Subnets(network)
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	taken := make(map[netip.Prefix]occupiedLease, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		s, err := c.keys.ParseSubnetKey(network, string(kv.Key))
		if err != nil {
			continue // not a subnet key; it blocks nothing
		}
		o := occupiedLease{Subnet: s, ModRevision: kv.ModRevision}
		if rec, err := decodeRecord(kv.Value); err == nil {
			o.HostID = rec.HostID
		}
		taken[s] = o
	}
	return taken, nil
}

// ownLease finds this host's existing lease, preferring its previous subnet.
func ownLease(taken map[netip.Prefix]occupiedLease, req AcquireRequest) (occupiedLease, bool) {
	if o, ok := taken[req.Previous]; ok && o.HostID == req.Record.HostID && req.Config.Contains(o.Subnet) {
		return o, true
	}
	for _, o := range taken {
		if o.HostID == req.Record.HostID && req.Config.Contains(o.Subnet) {
			return o, true
		}
	}
	return occupiedLease{}, false
}

// pickFree returns the previous subnet when free, else a random free one, so
// hosts starting together rarely collide on the same candidate. A subnet is
// busy when its key exists or when it overlaps a key that is not one of the
// network's subnets (left from a config with another subnetLen), so a
// config change can never hand out addresses a running host still uses.
func pickFree(req AcquireRequest, taken map[netip.Prefix]occupiedLease) (netip.Prefix, error) {
	var foreign []netip.Prefix
	for s := range taken {
		if !req.Config.Contains(s) {
			foreign = append(foreign, s)
		}
	}
	busy := func(s netip.Prefix) bool {
		if _, ok := taken[s]; ok {
			return true
		}
		return slices.ContainsFunc(foreign, s.Overlaps)
	}
	if req.Previous.IsValid() && req.Config.Contains(req.Previous) && !busy(req.Previous) {
		return req.Previous, nil
	}
	// Pick the k-th free subnet: a walk over n subnets, cheap next to an etcd
	// round trip. Only foreign keys make counting the free ones take a walk.
	n := req.Config.SubnetCount()
	free := n - len(taken)
	if len(foreign) > 0 {
		free = 0
		for i := range n {
			if !busy(req.Config.SubnetAt(i)) {
				free++
			}
		}
	}
	if free == 0 {
		return netip.Prefix{}, fmt.Errorf("network %s: all %d subnets of /%d are leased: %w", req.Config.Network, n, req.Config.SubnetLen, ErrNetworkFull)
	}
	k := rand.IntN(free)
	for i := range n {
		s := req.Config.SubnetAt(i)
		if busy(s) {
			continue
		}
		if k == 0 {
			return s, nil
		}
		k--
	}
	return netip.Prefix{}, fmt.Errorf("network %s: %w", req.Config.Network, ErrNetworkFull)
}

func (c *Client) txnPut(ctx context.Context, cmp clientv3.Cmp, key, value string, id clientv3.LeaseID) (bool, error) {
	resp, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, value, clientv3.WithLease(id))).Commit()
	if err != nil {
		return false, fmt.Errorf("write lease %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

func (c *Client) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.cli.Revoke(ctx, id); err != nil {
		c.log.Debug("revoke unused etcd lease", "lease", int64(id), "err", err)
	}
}

// hold starts keeping the lease alive. The keep-alive outlives ctx's caller
// only until Stop: it is bound to the client, not to the acquire call.
func (c *Client) hold(ctx context.Context, network string, s netip.Prefix, value string, id clientv3.LeaseID) (*HeldLease, error) {
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := c.cli.KeepAlive(kctx, id)
	if err != nil {
		cancel()
		c.revoke(id)
		return nil, fmt.Errorf("keep etcd lease %x alive: %w", int64(id), err)
	}
	h := &HeldLease{Subnet: s, c: c, key: c.keys.Subnet(network, s), value: value, id: id, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for range ch { // drained until etcd stops renewing or Stop cancels
		}
	}()
	return h, nil
}

// Done is closed when the lease is no longer being renewed: it expired, was
// revoked, or Stop was called.
func (h *HeldLease) Done() <-chan struct{} { return h.done }

// EtcdLease is the etcd lease ID the key is bound to.
func (h *HeldLease) EtcdLease() int64 { return int64(h.id) }

// Stop stops renewing without revoking: the key stays until the TTL runs out,
// so a restarting daemon reclaims it and peers keep their routes meanwhile.
func (h *HeldLease) Stop() {
	h.stopped.Do(h.cancel)
	<-h.done
}

// Release stops renewing and revokes the lease, deleting the key at once.
func (h *HeldLease) Release(ctx context.Context) error {
	h.Stop()
	if _, err := h.c.cli.Revoke(ctx, h.id); err != nil {
		return fmt.Errorf("revoke lease for %s: %w", h.Subnet, err)
	}
	return nil
}

// Reassert recreates the lease key if someone deleted it while this host
// still runs containers in the subnet. It returns ErrSubnetTaken if another
// host wrote the key meanwhile.
func (h *HeldLease) Reassert(ctx context.Context) error {
	resp, err := h.c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(h.key), "=", 0)).
		Then(clientv3.OpPut(h.key, h.value, clientv3.WithLease(h.id))).
		Else(clientv3.OpGet(h.key)).
		Commit()
	if err != nil {
		return fmt.Errorf("reassert lease %s: %w", h.key, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && kvs[0].Lease == int64(h.id) {
		return nil // still ours
	}
	return fmt.Errorf("reassert lease %s: %w", h.key, ErrSubnetTaken)
}
