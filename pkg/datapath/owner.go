package datapath

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// VethOwner is the CNI attachment a host veth belongs to. AttachContainer
// writes it as the veth's alias (`ip link` shows it), so GC can find the
// veths of attachments the runtime no longer lists without entering any
// container's namespace.
type VethOwner struct {
	Network     string
	ContainerID string
	IfName      string
}

// vethAliasPrefix starts the alias of every host veth of a network.
func vethAliasPrefix(network string) string { return "overlay:" + network + ":" }

// maxAlias is the kernel's limit on an interface alias (IFALIASZ - 1).
const maxAlias = 255

// Alias is the host veth's alias: "overlay:NETWORK:CONTAINERID:IFNAME", or,
// when a long container ID would not fit, "overlay:NETWORK:sha256:HEX" of
// the two. Neither a network name, a container ID nor an interface name can
// hold a colon, so the fields stay apart.
func (o VethOwner) Alias() string {
	a := vethAliasPrefix(o.Network) + o.ContainerID + ":" + o.IfName
	if len(a) <= maxAlias {
		return a
	}
	sum := sha256.Sum256([]byte(o.ContainerID + ":" + o.IfName))
	return vethAliasPrefix(o.Network) + "sha256:" + hex.EncodeToString(sum[:])
}

// hostVethTries is how many names AttachContainer tries for a host veth.
const hostVethTries = 4

// HostVethName is the host veth's name: "ovl" and 12 hex digits of a hash
// of the attachment (and try, should a name be taken). A name is the one
// thing a link gets in the same request that creates it (the kernel
// ignores an alias there), so it is what identifies the veth of an ADD
// that died before it could set the alias.
func (o VethOwner) HostVethName(try int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d", o.Network, o.ContainerID, o.IfName, try))
	return "ovl" + hex.EncodeToString(sum[:6])
}

// hostVethNames are every name HostVethName gives o.
func (o VethOwner) hostVethNames() []string {
	names := make([]string, hostVethTries)
	for i := range names {
		names[i] = o.HostVethName(i)
	}
	return names
}

// isHostVethName reports whether name is one HostVethName gives.
func isHostVethName(name string) bool {
	hexPart, ok := strings.CutPrefix(name, "ovl")
	if !ok || len(hexPart) != 12 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil && strings.ToLower(hexPart) == hexPart
}

// ownedBy reports whether alias marks a host veth of network.
func ownedBy(alias, network string) bool {
	return strings.HasPrefix(alias, vethAliasPrefix(network))
}

// ParseVethAlias reads an alias written by Alias back, false for the hashed
// form and for aliases that are not an overlay veth's.
func ParseVethAlias(alias string) (VethOwner, bool) {
	rest, ok := strings.CutPrefix(alias, "overlay:")
	if !ok {
		return VethOwner{}, false
	}
	f := strings.Split(rest, ":")
	if len(f) != 3 || f[1] == "sha256" {
		return VethOwner{}, false
	}
	return VethOwner{Network: f[0], ContainerID: f[1], IfName: f[2]}, true
}
