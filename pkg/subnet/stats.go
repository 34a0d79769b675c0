package subnet

import (
	"context"
	"errors"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Stats counts what went wrong between this process and etcd, for
// overlayd's metrics.
type Stats struct {
	// RequestErrors counts failed etcd requests by operation (get, put,
	// txn, delete, lease_grant, lease_revoke, lease_ttl, other). Requests
	// the caller cancelled are not errors.
	RequestErrors map[string]uint64
	// WatchRelists counts, by network, the lease watches that failed and
	// made the subnet map be listed again (the first list is not counted).
	WatchRelists map[string]uint64
}

// stats is the Client's live counters.
type stats struct {
	mu      sync.Mutex
	errors  map[string]uint64
	relists map[string]uint64
}

// operations are the values of RequestErrors' keys, each present from
// the start, so a series exists (at 0) before the first failure.
var operations = []string{"get", "put", "txn", "delete", "lease_grant", "lease_revoke", "lease_ttl", "other"}

func newStats() *stats {
	s := &stats{errors: map[string]uint64{}, relists: map[string]uint64{}}
	for _, op := range operations {
		s.errors[op] = 0
	}
	return s
}

// Stats returns a copy of the counters.
func (c *Client) Stats() Stats {
	if c.stats == nil {
		return Stats{}
	}
	c.stats.mu.Lock()
	defer c.stats.mu.Unlock()
	out := Stats{RequestErrors: make(map[string]uint64, len(c.stats.errors)), WatchRelists: make(map[string]uint64, len(c.stats.relists))}
	for k, v := range c.stats.errors {
		out.RequestErrors[k] = v
	}
	for k, v := range c.stats.relists {
		out.WatchRelists[k] = v
	}
	return out
}

// relisted counts a re-list of network's leases; n is 0 for the first
// list, which only makes the network's counter exist.
func (s *stats) relisted(network string, n uint64) {
	if s == nil { // a Client made by hand in a test
		return
	}
	s.mu.Lock()
	s.relists[network] += n
	s.mu.Unlock()
}

// interceptor counts the errors of every unary etcd request; streams
// (watches, keep-alives) report their failures elsewhere: a failed lease
// watch as a re-list, a lost keep-alive as a lost lease.
func (s *stats) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err != nil && !cancelled(ctx, err) {
			s.mu.Lock()
			s.errors[operation(method)]++
			s.mu.Unlock()
		}
		return err
	}
}

// cancelled tells a request its caller gave up on (shutdown, a dropped
// command) from one etcd failed.
func cancelled(ctx context.Context, err error) bool {
	return errors.Is(ctx.Err(), context.Canceled) || status.Code(err) == codes.Canceled
}

// operation names a gRPC method of etcd's API by what it does.
func operation(method string) string {
	switch method[strings.LastIndexByte(method, '/')+1:] {
	case "Range":
		return "get"
	case "Put":
		return "put"
	case "Txn":
		return "txn"
	case "DeleteRange":
		return "delete"
	case "LeaseGrant":
		return "lease_grant"
	case "LeaseRevoke":
		return "lease_revoke"
	case "LeaseTimeToLive":
		return "lease_ttl"
	}
	return "other"
}
