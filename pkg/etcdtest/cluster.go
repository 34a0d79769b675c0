package etcdtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cluster is several in-process members forming one etcd cluster, for
// fault tests: stop a member (Close or Kill) and see the rest carry on.
type Cluster struct {
	// Members are named m1, m2, … in order; their data dirs are
	// DIR/m1, DIR/m2, ….
	Members []*Server
}

// StartCluster starts n members (n ≥ 1) on free loopback ports, with their
// data under dir, and waits until every one serves. logLevel is etcd's zap
// level ("error" if empty).
func StartCluster(dir string, n int, logLevel string) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdtest: a cluster needs at least one member, not %d", n)
	}
	// Every member must know every peer URL before any starts, so a port
	// taken meanwhile by another process means starting over.
	for attempt := 1; ; attempt++ {
		c, picked, err := startCluster(dir, n, logLevel)
		if err != nil && attempt < portAttempts && takenPort(err, picked) {
			for i := range n {
				os.RemoveAll(filepath.Join(dir, fmt.Sprintf("m%d", i+1)))
			}
			continue
		}
		return c, err
	}
}

// startCluster also returns the URLs it picked.
func startCluster(dir string, n int, logLevel string) (*Cluster, []string, error) {
	opts := make([]Options, n)
	initial := make([]string, n)
	var picked []string
	for i := range opts {
		peer, err := pickURL("http")
		if err != nil {
			return nil, nil, err
		}
		client, err := pickURL("http")
		if err != nil {
			return nil, nil, err
		}
		picked = append(picked, peer, client)
		name := fmt.Sprintf("m%d", i+1)
		opts[i] = Options{DataDir: filepath.Join(dir, name), Name: name, ClientURL: client, PeerURL: peer, LogLevel: logLevel}
		initial[i] = name + "=" + peer
	}
	c := &Cluster{}
	for i := range opts {
		opts[i].InitialCluster = strings.Join(initial, ",")
		s, err := launchOnce(opts[i])
		if err != nil {
			c.Close()
			return nil, picked, err
		}
		c.Members = append(c.Members, s)
	}
	// Every member waits for a majority, so wait for all at once.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range c.Members {
		wg.Go(func() { errs[i] = s.waitReady() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, picked, err
	}
	return c, picked, nil
}

// NewCluster starts an n-member cluster for a test and stops it when the
// test ends.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartCluster(t.TempDir(), n, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Endpoints returns every member's client URL (stopped ones included, as a
// client configured before the failure would have them).
func (c *Cluster) Endpoints() []string {
	eps := make([]string, 0, len(c.Members))
	for _, s := range c.Members {
		eps = append(eps, s.clientURL)
	}
	return eps
}

// Leader returns the running member that every running member agrees is the
// leader, or nil while there is none (during an election, or without a
// majority).
func (c *Cluster) Leader() *Server {
	var lead uint64
	for _, s := range c.Members {
		if s.Stopped() {
			continue
		}
		id := s.LeaderID()
		if id == 0 || (lead != 0 && id != lead) {
			return nil
		}
		lead = id
	}
	for _, s := range c.Members {
		if !s.Stopped() && s.ID() == lead {
			return s
		}
	}
	return nil
}

// WaitLeader waits up to timeout for Leader to name a member.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Server, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := c.Leader(); l != nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("etcdtest: the running members agree on no leader after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops every member that still runs, at once and without leadership
// hand-over (Kill): the cluster is being thrown away.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, s := range c.Members {
		wg.Go(s.Kill)
	}
	wg.Wait()
}
