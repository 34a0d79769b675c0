package subnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
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
	// PreviousLease is the etcd lease this host's previous run held (from
	// its state dir), 0 if unknown. A key of this host that is bound to
	// another live lease belongs to another process: it is never taken over.
	PreviousLease int64
	// TTL of the etcd lease; the key vanishes this long after the host stops
	// renewing it.
	TTL time.Duration
	// Quarantine is how long, after the key vanished, the subnet stays
	// reserved for this host so no other host can lease it. Zero disables it.
	Quarantine time.Duration
	// Remember, if set, persists the subnet and etcd lease before the key is
	// written, so a restart after a crash at any point knows the key as its
	// own. An error aborts the acquire.
	Remember func(s netip.Prefix, lease int64) error
}

// ErrNetworkFull means every subnet of the network is leased or reserved.
var ErrNetworkFull = errors.New("no free subnet")

// ErrNoEdgeRange means an edge host asked for an address in a network
// whose config has no edgeCIDR.
var ErrNoEdgeRange = errors.New("no edge range")

// ErrSubnetTaken means another host now holds the subnet this host had.
var ErrSubnetTaken = errors.New("subnet taken by another host")

// HostConflictError means a live lease in etcd carries this host's ID but
// is not this process's: a second overlayd with the same state, or a
// machine cloned from this one's image (Cloned: its public IP differs).
type HostConflictError struct {
	Subnet netip.Prefix
	Holder Record
	Lease  int64
	Cloned bool
}

func (e *HostConflictError) Error() string {
	if e.Cloned {
		return fmt.Sprintf("host ID %s already holds %s from public IP %s (etcd lease %x): this machine looks cloned from another one",
			e.Holder.HostID, e.Subnet, e.Holder.PublicIP, e.Lease)
	}
	return fmt.Sprintf("host ID %s already holds %s from this public IP under etcd lease %x, which is not this process's: another overlayd with the same host ID is running",
		e.Holder.HostID, e.Subnet, e.Lease)
}

// raceRetries bounds how often Acquire re-reads the map after losing a race
// for a subnet to another host.
const raceRetries = 10

// HeldLease is a subnet this host holds. Its etcd lease (and the subnet's
// reservation lease) are kept alive until Stop or until etcd stops accepting
// renewals, which closes Done.
type HeldLease struct {
	Subnet netip.Prefix

	c        *Client
	key      string
	value    string
	resKey   string
	resValue string
	id       clientv3.LeaseID
	resID    clientv3.LeaseID // 0 without quarantine
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
	// expires is when etcd drops the lease unless it is renewed again
	// (unix nanos; 0 before the first keep-alive answer).
	expires atomic.Int64
}

// mapSnapshot is the subnet map and its reservations at one revision.
type mapSnapshot struct {
	subnets      map[netip.Prefix]occupiedLease
	reservations map[netip.Prefix]reservation
}

// occupiedLease is a key in the subnet map; Record is read only where it
// may be this host's own (see snapshotMap), and zero elsewhere or when the
// value is unreadable (the subnet is still taken).
type occupiedLease struct {
	Subnet      netip.Prefix
	Record      Record
	ModRevision int64
	Lease       int64
}

type reservation struct {
	HostID      string
	ModRevision int64
	Lease       int64
}

// Acquire leases a subnet for this host: the one it already holds (found by
// host ID and fenced by etcd lease), else its previous subnet if free and
// not reserved for another host, else a random free one.
func (c *Client) Acquire(ctx context.Context, req AcquireRequest) (*HeldLease, error) {
	if _, err := EncodeRecord(req.Record); err != nil {
		return nil, fmt.Errorf("encode lease record: %w", err)
	}
	if req.TTL < time.Second {
		return nil, fmt.Errorf("lease TTL %s is shorter than etcd's 1s granularity", req.TTL)
	}
	for range raceRetries {
		h, err := c.tryAcquire(ctx, req)
		if err != nil || h != nil {
			return h, err
		}
	}
	return nil, fmt.Errorf("acquire subnet in network %s: lost the race %d times; retry", req.Network, raceRetries)
}

// tryAcquire makes one attempt; it returns nil, nil when another host
// changed the map between our read and our write.
func (c *Client) tryAcquire(ctx context.Context, req AcquireRequest) (*HeldLease, error) {
	snap, err := c.snapshotMap(ctx, req.Network, req.Record.HostID)
	if err != nil {
		return nil, err
	}
	if own, ok := ownLease(snap.subnets, req); ok {
		if err := fence(own, req); err != nil {
			return nil, err
		}
		// The key is still this host's: it took the subnet back then, not
		// now (an unknown time stays unknown rather than becoming now).
		value, err := recordSince(req.Record, own.Record.Since)
		if err != nil {
			return nil, err
		}
		return c.claim(ctx, req, value, own.Subnet, snap, clientv3.LeaseID(own.Lease))
	}
	s, err := pickFree(req, snap)
	if err != nil {
		return nil, err
	}
	value, err := recordSince(req.Record, time.Now().UTC().Truncate(time.Second))
	if err != nil {
		return nil, err
	}
	return c.claim(ctx, req, value, s, snap, 0)
}

// recordSince encodes r as taken at since.
func recordSince(r Record, since time.Time) (string, error) {
	r.Since = since
	value, err := EncodeRecord(r)
	if err != nil {
		return "", fmt.Errorf("encode lease record: %w", err)
	}
	return value, nil
}

// fence decides whether this process may take over its own key: only when
// the key's etcd lease is the one this host's state dir remembers (or it
// remembers none and the key names this machine's public IP, as after an
// upgrade from a release that did not remember leases).
func fence(own occupiedLease, req AcquireRequest) error {
	if own.Record.PublicIP != req.Record.PublicIP {
		return &HostConflictError{Subnet: own.Subnet, Holder: own.Record, Lease: own.Lease, Cloned: true}
	}
	if req.PreviousLease != 0 && own.Lease != req.PreviousLease {
		return &HostConflictError{Subnet: own.Subnet, Holder: own.Record, Lease: own.Lease}
	}
	return nil
}

// claim writes the subnet key (and its reservation) for this host. adopt is
// the live etcd lease of this host's existing key, 0 for a new lease.
func (c *Client) claim(ctx context.Context, req AcquireRequest, value string, s netip.Prefix, snap mapSnapshot, adopt clientv3.LeaseID) (*HeldLease, error) {
	// The reservation's lease is granted while the subnet's is granted and
	// remembered: each grant is a write through etcd's raft log, and a
	// joining host waits for all of them before its peers hear of it.
	var resAdopt clientv3.LeaseID
	if r := snap.reservations[s]; r.HostID == req.Record.HostID {
		resAdopt = clientv3.LeaseID(r.Lease)
	}
	var resGrant chan granted
	if req.Quarantine > 0 {
		resGrant = make(chan granted, 1)
		go func() {
			id, err := c.leaseFor(ctx, resAdopt, req.TTL+req.Quarantine)
			resGrant <- granted{id, err}
		}()
	}
	id, err := c.leaseFor(ctx, adopt, req.TTL)
	if err == nil && req.Remember != nil {
		if rerr := req.Remember(s, int64(id)); rerr != nil {
			err = fmt.Errorf("remember subnet %s: %w", s, rerr)
		}
	}
	var resID clientv3.LeaseID
	if resGrant != nil {
		g := <-resGrant
		resID = g.id
		if err == nil {
			err = g.err
		}
	}
	if err != nil {
		c.revokeIfNew(id, adopt)
		c.revokeIfNew(resID, resAdopt)
		return nil, err
	}
	won, err := c.claimTxn(ctx, req, value, s, snap, id, resID)
	if err != nil || !won {
		c.revokeIfNew(id, adopt)
		c.revokeIfNew(resID, resAdopt)
		return nil, err
	}
	return c.hold(req.Network, s, value, encodeReservation(req.Record.HostID), id, resID)
}

// granted is leaseFor's answer.
type granted struct {
	id  clientv3.LeaseID
	err error
}

// leaseFor returns adopt when that etcd lease is still alive, else a new
// lease of ttl (0 and an error if etcd refused both).
func (c *Client) leaseFor(ctx context.Context, adopt clientv3.LeaseID, ttl time.Duration) (clientv3.LeaseID, error) {
	if adopt != 0 {
		if _, err := c.cli.KeepAliveOnce(ctx, adopt); err == nil {
			return adopt, nil
		}
	}
	grant, err := c.cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant etcd lease: %w", err)
	}
	return grant.ID, nil
}

func (c *Client) revokeIfNew(id, adopted clientv3.LeaseID) {
	if id != 0 && id != adopted {
		c.revoke(id)
	}
}

// claimTxn writes key and reservation if neither changed since snap.
func (c *Client) claimTxn(ctx context.Context, req AcquireRequest, value string, s netip.Prefix, snap mapSnapshot, id, resID clientv3.LeaseID) (bool, error) {
	key := c.keys.Subnet(req.Network, s)
	resKey := c.keys.Reservation(req.Network, s)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(key), "=", snap.subnets[s].ModRevision),
		clientv3.Compare(clientv3.ModRevision(resKey), "=", snap.reservations[s].ModRevision),
	}
	ops := []clientv3.Op{clientv3.OpPut(key, value, clientv3.WithLease(id))}
	if resID != 0 {
		ops = append(ops, clientv3.OpPut(resKey, encodeReservation(req.Record.HostID), clientv3.WithLease(resID)))
	}
	resp, err := c.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("write lease %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

// snapshotMap reads the subnet map and its reservations. Only the keys
// matter, except for the records of hostID (ownLease, fence): a value
// that does not hold hostID as encodeRecord writes it is not decoded, so
// a start in a network of 10 000 hosts does not decode 10 000 records
// (about 25 ms).
func (c *Client) snapshotMap(ctx context.Context, network, hostID string) (mapSnapshot, error) {
	quoted, err := json.Marshal(hostID)
	if err != nil {
		return mapSnapshot{}, fmt.Errorf("encode host ID: %w", err)
	}
	subnets, reservations := c.keys.Subnets(network), c.keys.Reservations(network)
	resp, err := c.cli.Txn(ctx).Then(
		clientv3.OpGet(subnets, clientv3.WithPrefix()),
		clientv3.OpGet(reservations, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return mapSnapshot{}, fmt.Errorf("list %s: %w", subnets, err)
	}
	snap := mapSnapshot{subnets: map[netip.Prefix]occupiedLease{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		s, err := c.keys.ParseSubnetKey(network, string(kv.Key))
		if err != nil {
			continue // not a subnet key; it blocks nothing
		}
		o := occupiedLease{Subnet: s, ModRevision: kv.ModRevision, Lease: kv.Lease}
		if bytes.Contains(kv.Value, quoted) {
			if rec, err := decodeRecord(kv.Value); err == nil {
				o.Record = rec
			}
		}
		snap.subnets[s] = o
	}
	snap.reservations = parseReservations(reservations, resp.Responses[1].GetResponseRange().Kvs)
	return snap, nil
}

// parseReservations reads the reservation keys under prefix.
func parseReservations(prefix string, kvs []*mvccpb.KeyValue) map[netip.Prefix]reservation {
	out := make(map[netip.Prefix]reservation, len(kvs))
	for _, kv := range kvs {
		if s, err := ParseSubnet(string(kv.Key[len(prefix):])); err == nil {
			out[s] = reservation{HostID: decodeReservation(kv.Value), ModRevision: kv.ModRevision, Lease: kv.Lease}
		}
	}
	return out
}

// pool is where this request's lease comes from: the container subnets
// for a host, the edge range for an edge host.
func (req AcquireRequest) pool() netconf.Pool { return req.kind().Pool(req.Config) }

func (req AcquireRequest) kind() Kind {
	if req.Record.Kind == "" {
		return KindHost
	}
	return req.Record.Kind
}

// ownLease finds this host's existing lease of the kind it asks for,
// preferring its previous subnet.
func ownLease(taken map[netip.Prefix]occupiedLease, req AcquireRequest) (occupiedLease, bool) {
	pool := req.pool()
	mine := func(o occupiedLease) bool {
		return o.Record.HostID == req.Record.HostID && o.Record.Kind == req.kind() && pool.Contains(o.Subnet)
	}
	if o, ok := taken[req.Previous]; ok && mine(o) {
		return o, true
	}
	for _, o := range taken {
		if mine(o) {
			return o, true
		}
	}
	return occupiedLease{}, false
}

// pickFree returns the previous subnet when free, else a random free one, so
// hosts starting together rarely collide on the same candidate. A subnet is
// busy when its key exists, when another host's reservation holds it, or
// when it overlaps a key that is not one of the network's subnets (left from
// a config with another subnetLen), so a config change can never hand out
// addresses a running host still uses.
func pickFree(req AcquireRequest, snap mapSnapshot) (netip.Prefix, error) {
	pool := req.pool()
	var foreign []netip.Prefix
	for s := range snap.subnets {
		// The other kind's slots never overlap this pool: only keys that
		// are no slot at all (an earlier config) can block one.
		if !req.Config.Contains(s) && !req.Config.ContainsEdge(s) {
			foreign = append(foreign, s)
		}
	}
	leased, reserved := 0, 0
	for s := range snap.subnets {
		if pool.Contains(s) {
			leased++
		}
	}
	for s, r := range snap.reservations {
		if _, taken := snap.subnets[s]; !taken && r.HostID != req.Record.HostID && pool.Contains(s) {
			reserved++
		}
	}
	busy := func(s netip.Prefix) bool {
		if _, ok := snap.subnets[s]; ok {
			return true
		}
		if r, ok := snap.reservations[s]; ok && r.HostID != req.Record.HostID {
			return true
		}
		return slices.ContainsFunc(foreign, s.Overlaps)
	}
	if req.Previous.IsValid() && pool.Contains(req.Previous) && !busy(req.Previous) {
		return req.Previous, nil
	}
	// Pick the k-th free slot: a walk over n slots, cheap next to an etcd
	// round trip. Only foreign keys or reservations make counting the free
	// ones take a walk.
	n := pool.Count()
	free := n - leased
	if len(foreign) > 0 || reserved > 0 {
		free = 0
		for i := range n {
			if !busy(pool.At(i)) {
				free++
			}
		}
	}
	if free <= 0 {
		return netip.Prefix{}, fullError(req, n, reserved)
	}
	k := rand.IntN(free)
	for i := range n {
		s := pool.At(i)
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

// fullError says which range ran out; it matches ErrNetworkFull (or
// ErrNoEdgeRange) with errors.Is.
func fullError(req AcquireRequest, n, reserved int) error {
	if req.kind() == KindEdge {
		if n == 0 {
			return &sentinelError{ErrNoEdgeRange, fmt.Sprintf("network %s has no edge range (edgeCIDR)", req.Config.Network)}
		}
		return &sentinelError{ErrNetworkFull, fmt.Sprintf("edge range %s: all %d addresses are leased or quarantined (%d reserved for edge hosts that went away recently)",
			req.Config.EdgeCIDR, n, reserved)}
	}
	return &sentinelError{ErrNetworkFull, fmt.Sprintf("network %s: all %d subnets of /%d are leased or quarantined (%d reserved for hosts that went away recently)",
		req.Config.Network, n, req.Config.SubnetLen, reserved)}
}

// sentinelError is a message of its own that still matches a sentinel,
// so the message need not end in the sentinel's words.
type sentinelError struct {
	sentinel error
	msg      string
}

func (e *sentinelError) Error() string        { return e.msg }
func (e *sentinelError) Is(target error) bool { return target == e.sentinel }

func (c *Client) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.cli.Revoke(ctx, id); err != nil {
		c.log.Debug("revoke etcd lease", "lease", int64(id), "err", err)
	}
}

// hold starts keeping the leases alive, bound to the client, not to the
// acquire call: they are renewed until Stop.
func (c *Client) hold(network string, s netip.Prefix, value, resValue string, id, resID clientv3.LeaseID) (*HeldLease, error) {
	kctx, cancel := context.WithCancel(context.Background())
	ch, err := c.cli.KeepAlive(kctx, id)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("keep etcd lease %x alive: %w", int64(id), err)
	}
	h := &HeldLease{Subnet: s, c: c, key: c.keys.Subnet(network, s), value: value,
		resKey: c.keys.Reservation(network, s), resValue: resValue, id: id, resID: resID, cancel: cancel, done: make(chan struct{})}
	if resID != 0 {
		resCh, err := c.cli.KeepAlive(kctx, resID)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("keep reservation lease %x alive: %w", int64(resID), err)
		}
		go func() {
			for range resCh { // renewed until Stop; its loss only shortens the quarantine
			}
		}()
	}
	go func() {
		defer close(h.done)
		for resp := range ch { // drained until etcd stops renewing or Stop cancels
			h.expires.Store(time.Now().Add(time.Duration(resp.TTL) * time.Second).UnixNano())
		}
	}()
	return h, nil
}

// Done is closed when the lease is no longer being renewed: it expired, was
// revoked, etcd was unreachable for longer than its TTL, or Stop was called.
func (h *HeldLease) Done() <-chan struct{} { return h.done }

// Expires is when etcd drops the lease unless it is renewed before, as
// of the last renewal etcd answered (zero before the first).
func (h *HeldLease) Expires() time.Time {
	if n := h.expires.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// EtcdLease is the etcd lease ID the key is bound to.
func (h *HeldLease) EtcdLease() int64 { return int64(h.id) }

// Stop stops renewing without revoking: the key stays until the TTL runs out,
// so a restarting daemon reclaims it and peers keep their routes meanwhile.
func (h *HeldLease) Stop() {
	h.stopOnce.Do(h.cancel)
	<-h.done
}

// Release stops renewing and revokes both leases, deleting the key and the
// reservation at once.
func (h *HeldLease) Release(ctx context.Context) error {
	h.Stop()
	if h.resID != 0 {
		if _, err := h.c.cli.Revoke(ctx, h.resID); err != nil {
			return fmt.Errorf("revoke reservation of %s: %w", h.Subnet, err)
		}
	}
	return h.Withdraw(ctx)
}

// Withdraw stops renewing and revokes the subnet lease, so peers drop their
// routes to this host at once, but keeps the reservation: the subnet stays
// this host's for the quarantine time.
func (h *HeldLease) Withdraw(ctx context.Context) error {
	h.Stop()
	if _, err := h.c.cli.Revoke(ctx, h.id); err != nil {
		return fmt.Errorf("revoke lease for %s: %w", h.Subnet, err)
	}
	return nil
}

// Reassert recreates the lease key (and the subnet's reservation) if
// someone deleted it while this host still runs containers in the subnet.
// It returns ErrSubnetTaken if another host wrote the key meanwhile.
func (h *HeldLease) Reassert(ctx context.Context) error {
	then := []clientv3.Op{clientv3.OpPut(h.key, h.value, clientv3.WithLease(h.id))}
	if h.resID != 0 {
		then = append(then, clientv3.OpPut(h.resKey, h.resValue, clientv3.WithLease(h.resID)))
	}
	resp, err := h.c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(h.key), "=", 0)).
		Then(then...).
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
