package main

import (
	"errors"
	"fmt"
	"io"

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
	s, err := store.New(c.IPAM.DataDir, c.Network)
	if err != nil {
		return err
	}
	ip, err := s.Reserve(attachment(args), rng)
	if err != nil {
		return storeError(s, err)
	}
	r, err := newResult(ip, hf).GetAsVersion(c.CNIVersion)
	if err != nil {
		return fmt.Errorf("convert result to version %s: %w", c.CNIVersion, err)
	}
	return r.PrintTo(p.stdout)
}

// del releases the attachment's address. It needs neither the host file nor
// the container, so it works after both are gone.
func (p plugin) del(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	s, err := store.New(c.IPAM.DataDir, c.Network)
	if err != nil {
		return err
	}
	if err := s.Release(attachment(args)); err != nil {
		return storeError(s, err)
	}
	return nil
}

// check verifies the attachment still holds an address and, when the
// runtime passes the result it cached, that it is the address in there.
func (p plugin) check(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	s, err := store.New(c.IPAM.DataDir, c.Network)
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

// status reports whether ADD can succeed: overlayd must have published a
// usable subnet, and the store must be usable.
func (p plugin) status(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	if _, _, err := readRange(c, types.ErrPluginNotAvailable); err != nil {
		return err
	}
	if _, err := store.New(c.IPAM.DataDir, c.Network); err != nil {
		return cnierr.Unavailable("ipam store is unusable",
			fmt.Sprintf("%v; check that %s is a writable directory", err, c.IPAM.DataDir))
	}
	return nil
}

// gc releases every reservation whose attachment the runtime no longer lists
// as valid; this is what frees addresses of containers lost in a reboot or a
// runtime crash, which never got their DEL.
func (p plugin) gc(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	s, err := store.New(c.IPAM.DataDir, c.Network)
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
// failures carry code (11 from ADD, 50 from STATUS).
func readRange(c *config, code uint) (hostfile.HostFile, allocator.Range, error) {
	path := c.hostFilePath()
	hf, err := hostfile.Read(path)
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
