package datapath

import "errors"

// RemoveNetwork deletes the VXLAN device and the bridge, and with them every
// route, neighbour and FDB entry on them. It is the explicit teardown; a
// daemon stopping does not call it, so containers keep working across
// restarts. Links already absent are fine; a link of that name but another
// type is left alone and reported.
func RemoveNetwork(vxlanName, bridgeName string) error {
	return errors.Join(deleteLink(vxlanName, "vxlan"), deleteLink(bridgeName, "bridge"))
}
