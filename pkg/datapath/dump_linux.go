package datapath

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// dumpAttempts bounds the retries of a dump the kernel flagged as
// interrupted (the table changed while it was read).
const dumpAttempts = 5

// neighList is netlink.NeighList retried on ErrDumpInterrupted, which
// plugins' netlinksafe does not wrap. Unlike netlinksafe it never returns a
// possibly inconsistent result: a reconcile that gives up now runs again soon.
func neighList(h *netlink.Handle, linkIndex, family int) ([]netlink.Neigh, error) {
	return retryDump(func() ([]netlink.Neigh, error) {
		return h.NeighList(linkIndex, family) //nolint:forbidigo // wrapped here
	})
}

func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpAttempts {
		var res []T
		res, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return nil, fmt.Errorf("netlink dump interrupted %d times in a row: %w", dumpAttempts, err)
}
