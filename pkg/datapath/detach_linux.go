package datapath

import (
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/plugins/pkg/ns"
)

// DetachContainer deletes the container end of the veth pair, which takes
// the host end with it. A container, namespace or interface that is already
// gone is success, so a CNI DEL can be repeated. A path that exists but is
// no longer a namespace (unmounted, file left behind) also counts as gone:
// the veth died with the namespace.
func DetachContainer(netnsPath, ifName string) error {
	if netnsPath == "" {
		return nil
	}
	cns, err := ns.GetNS(netnsPath)
	if nsGone(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open container netns %q: %w", netnsPath, err)
	}
	defer cns.Close()
	err = cns.Do(func(ns.NetNS) error { return deleteLink(ifName, "") })
	if err != nil {
		return fmt.Errorf("detach %q in netns %q: %w", ifName, netnsPath, err)
	}
	return nil
}

func nsGone(err error) bool {
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	return errors.As(err, &notExist) || errors.As(err, &notNS) || errors.Is(err, os.ErrNotExist)
}
