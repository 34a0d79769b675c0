// Package ipamplugin is overlay-ipam's CNI verbs: addresses from the subnet
// overlayd leased for this host, which it reads from the host file
// (pkg/hostfile), kept in an on-disk store (ipam/store) shared by every
// plugin process on the host. The overlay-ipam binary (ipam/) wires it to
// skel; the overlay plugin calls it in-process when its conflist names
// overlay-ipam.
//
// It reads `network` and `runDir` from the top level of the network config
// it is given and `dataDir` from its `ipam` section, so one conflist entry
// configures both the overlay plugin and this one.
package ipamplugin

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/overlaynet/overlay/ipam/allocator"
	"github.com/overlaynet/overlay/ipam/store"
	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// Plugin implements the CNI verbs of the overlay-ipam binary. Stdout
// receives the result JSON and nothing else. The overlay plugin runs the
// same verbs in its own process (Reserve, and Plugin's methods with a nil
// Stdout) when its conflist names overlay-ipam, saving an exec.
type Plugin struct {
	Stdout io.Writer
}

// Add reserves the attachment's address and prints the result.
func (p Plugin) Add(args *skel.CmdArgs) error {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return err
	}
	res, err := reserve(c, args)
	if err != nil {
		return err
	}
	// A runtime that gets no result does not know a new address exists, so
	// a failure from here on hands it back. An address the attachment held
	// before this ADD stays: it may be on the container's interface already,
	// and the runtime can still DEL it.
	r, err := res.Result.GetAsVersion(c.CNIVersion)
	if err != nil {
		err = types.NewError(types.ErrIncompatibleCNIVersion, "cannot give the result in cniVersion "+c.CNIVersion, err.Error())
	} else if err = r.PrintTo(p.Stdout); err != nil {
		err = cnierr.IOFailure("cannot write the result", err.Error())
	}
	if err != nil && res.New {
		if rerr := p.Del(args); rerr != nil {
			err = errors.Join(err, fmt.Errorf("release the address again: %w", rerr))
		}
	}
	return cnierr.Coded(err)
}

// Reservation is what Reserve gave an attachment.
type Reservation struct {
	// Result is the IPAM result at the current spec version.
	Result *current.Result
	// New is false when the attachment held the address before (a retried
	// ADD): a failed ADD may hand back only a new one.
	New bool
}

// Reserve is ADD without printing: it returns the attachment's address,
// reserving one if it holds none.
func Reserve(args *skel.CmdArgs) (Reservation, error) {
	c, err := loadConfig(args.StdinData)
	if err != nil {
		return Reservation{}, err
	}
	return reserve(c, args)
}

func reserve(c *config, args *skel.CmdArgs) (Reservation, error) {
	hf, rng, err := readRange(c, types.ErrTryAgainLater)
	if err != nil {
		return Reservation{}, err
	}
	s, err := openStore(c)
	if err != nil {
		return Reservation{}, err
	}
	res, err := s.Reserve(attachment(args), rng)
	if err != nil {
		return Reservation{}, storeError(s, err)
	}
	return Reservation{Result: newResult(res.IP, hf), New: res.New}, nil
}

// Del releases the attachment's address. It needs neither the host file nor
// the container, so it works after both are gone, and on an edge host.
func (p Plugin) Del(args *skel.CmdArgs) error {
	_, s, err := loadStore(args)
	if err != nil {
		return err
	}
	if err := s.Release(attachment(args)); err != nil {
		return storeError(s, err)
	}
	return nil
}

// Check verifies the attachment still holds an address and, when the
// runtime passes the result it cached, that it is the address in there. On
// an edge host it answers as ADD does, before it touches the store.
func (p Plugin) Check(args *skel.CmdArgs) error {
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
		return cnierr.AttachmentChanged(fmt.Sprintf("%s holds %s in %s, but the runtime's cached result does not list it", attachment(args), ip, s.Dir()))
	}
	return nil
}

// Status reports whether the network is ready: overlayd must have
// published a usable subnet and vouched for it recently (its ready stamp is
// fresh), and the store must be usable. ADD never looks at the stamp, so
// containers still start while overlayd restarts.
func (p Plugin) Status(args *skel.CmdArgs) error {
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
		return nil, cnierr.IOFailure("cannot open the ipam store", fmt.Sprintf("%v; check that ipam.dataDir %s is a writable directory", err, c.IPAM.DataDir))
	}
	return s, nil
}

// GC releases every reservation whose attachment the runtime no longer lists
// as valid; this is what frees addresses of containers lost in a reboot or a
// runtime crash, which never got their DEL.
func (p Plugin) GC(args *skel.CmdArgs) error {
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
		return cnierr.AttachmentChanged(fmt.Sprintf("no address is reserved in %s: %v", s.Dir(), err))
	}
	return cnierr.IOFailure("ipam store "+s.Dir()+" failed", err.Error())
}
