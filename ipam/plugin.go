package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/ipam/allocator"
	"github.com/overlaynet/overlay/ipam/store"
	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// plugin implements the CNI verbs. stdout receives the result JSON and
// nothing else.
type plugin struct {
	stdout io.Writer
}

func (p plugin) add(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	hf, rng, err := readRange(c, types.ErrTryAgainLater)
	if err != nil {
		return err
	}
	s, err := openStore(c)
	if err != nil {
		return err
	}
	a := attachment(args)
	res, err := s.Reserve(a, rng)
	if err != nil {
		return storeError(s, err)
	}
	// A runtime that gets no result does not know a new address exists, so
	// a failure from here on hands it back. An address the attachment held
	// before this ADD stays: it may be on the container's interface already,
	// and the runtime can still DEL it.
	r, err := newResult(res.IP, hf).GetAsVersion(c.CNIVersion)
	if err != nil {
		err = fmt.Errorf("convert result to version %s: %w", c.CNIVersion, err)
	} else if err = r.PrintTo(p.stdout); err != nil {
		err = fmt.Errorf("write result: %w", err)
	}
	if err != nil && res.New {
		if rerr := s.Release(a); rerr != nil {
			err = errors.Join(err, fmt.Errorf("release %s again: %w", res.IP, rerr))
		}
	}
	return err
}

// del releases the attachment's address. It needs neither the host file nor
// the container, so it works after both are gone, and on an edge host.
func (p plugin) del(args *skel.CmdArgs) error {
	_, s, err := loadStore(args)
	if err != nil {
		return err
	}
	if err := s.Release(attachment(args)); err != nil {
		return storeError(s, err)
	}
	return nil
}

// check verifies the attachment still holds an address and, when the
// runtime passes the result it cached, that it is the address in there. On
// an edge host it answers as ADD does, before it touches the store.
func (p plugin) check(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := cnierr.RefuseEdgeHost(c.hostFilePath(), c.Network); err != nil {
		return err
	}
	s, err := openStore(c)
	if err != nil {
		return err
	}
	ip, err := s.Lookup(attachment(args))
	if err != nil {
		return storeError(s, err)
	}
	prev, err := c.prevResult()
	if err != nil || prev == nil {
		return err
	}
	if !listsAddr(prev, ip) {
		return fmt.Errorf("%s holds %s in %s, but the runtime's cached result does not list it", attachment(args), ip, s.Dir())
	}
	return nil
}

// status reports whether the network is ready: overlayd must have
// published a usable subnet and vouched for it recently (its ready stamp is
// fresh), and the store must be usable. ADD never looks at the stamp, so
// containers still start while overlayd restarts.
func (p plugin) status(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	if _, _, err := readRange(c, types.ErrPluginNotAvailable); err != nil {
		return err
	}
	ready := hostfile.ReadyPath(c.RunDir, c.Network)
	if err := hostfile.CheckReady(ready, time.Now()); err != nil {
		return cnierr.NotReady(ready, err)
	}
	if _, err := openStore(c); err != nil {
		return cnierr.Unavailable("ipam store is unusable", err.Error())
	}
	return nil
}

// loadStore reads the config and opens its store, as every verb that
// works on reservations alone does.
func loadStore(args *skel.CmdArgs) (*config, *store.Store, error) {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return nil, nil, err
	}
	s, err := openStore(c)
	if err != nil {
		return nil, nil, err
	}
	return c, s, nil
}

// openStore opens the network's reservation store under ipam.dataDir.
func openStore(c *config) (*store.Store, error) {
	s, err := store.New(c.IPAM.DataDir, c.Network)
	if err != nil {
		return nil, fmt.Errorf("%w; check that ipam.dataDir %s is a writable directory", err, c.IPAM.DataDir)
	}
	return s, nil
}

// gc releases every reservation whose attachment the runtime no longer lists
// as valid; this is what frees addresses of containers lost in a reboot or a
// runtime crash, which never got their DEL.
func (p plugin) gc(args *skel.CmdArgs) error {
	c, s, err := loadStore(args)
	if err != nil {
		return err
	}
	keep, err := c.validAttachments()
	if err != nil {
		return err
	}
	valid := make(map[store.Attachment]bool, len(keep))
	for _, a := range keep {
		valid[store.Attachment{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	if err := s.GC(func(a store.Attachment) bool { return valid[a] }); err != nil {
		return storeError(s, err)
	}
	return nil
}

// readRange reads the host file and the address range it gives this host;
// failures carry code (11 from ADD, 50 from STATUS; an edge host's file is
// 7 from ADD, see cnierr.EdgeHost).
func readRange(c *config, code uint) (hostfile.HostFile, allocator.Range, error) {
	path := c.hostFilePath()
	hf, err := hostfile.ReadContainerHost(path)
	if err != nil {
		return hostfile.HostFile{}, allocator.Range{}, cnierr.HostFile(code, path, c.Network, err)
	}
	rng, err := allocator.NewRange(hf.Subnet, hf.Gateway)
	if err != nil {
		return hostfile.HostFile{}, allocator.Range{}, cnierr.HostFile(code, path, c.Network, err)
	}
	return hf, rng, nil
}

func attachment(args *skel.CmdArgs) store.Attachment {
	return store.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

// storeError gives the store's expected failures their CNI codes.
func storeError(s *store.Store, err error) error {
	var exhausted *allocator.ExhaustedError
	switch {
	case errors.Is(err, store.ErrLockTimeout):
		return cnierr.TryAgain("ipam store is busy",
			fmt.Sprintf("%v; another overlay-ipam process kept the store locked; retry, and if this persists look for a hung overlay-ipam process", err))
	case errors.As(err, &exhausted):
		return cnierr.TryAgain(exhausted.Error(),
			fmt.Sprintf("every address is reserved in %s; delete unused containers, or let the runtime run CNI GC to release reservations of containers that are gone", s.Dir()))
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("no address is reserved in %s: %w", s.Dir(), err)
	}
	return err
}
