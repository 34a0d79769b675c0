package datapath

import (
	"errors"
	"fmt"
	"net/netip"
)

// BridgeMissingError reports that the bridge containers attach to does not
// exist. overlayd creates it once it holds a subnet; the CNI plugin never
// does, so this passes once overlayd runs.
type BridgeMissingError struct {
	Name string
}

func (e *BridgeMissingError) Error() string {
	return fmt.Sprintf("bridge %q not found", e.Name)
}

// BridgeGatewayError reports that the bridge exists but does not carry the
// gateway address the caller expects: overlayd has not (yet) applied the
// subnet the caller read from the host file, or has moved on from it.
type BridgeGatewayError struct {
	Name    string
	Gateway netip.Prefix
	// Have is the bridge's IPv4 addresses.
	Have []netip.Prefix
}

func (e *BridgeGatewayError) Error() string {
	have := "none"
	if len(e.Have) > 0 {
		have = fmt.Sprint(e.Have)
	}
	return fmt.Sprintf("bridge %q does not carry gateway %s (its IPv4 addresses: %s)", e.Name, e.Gateway, have)
}

// ErrNoContainerIf is returned by InspectContainer when the container has no
// interface of the given name.
var ErrNoContainerIf = errors.New("no such interface in the container")

// ForeignIfError reports a container interface that exists but is not an
// overlay attachment to the bridge, with the reason.
type ForeignIfError struct {
	IfName string
	Bridge string
	Reason string
}

func (e *ForeignIfError) Error() string {
	return fmt.Sprintf("interface %q is not attached to bridge %q: %s", e.IfName, e.Bridge, e.Reason)
}

// IfExistsError reports that the container already has a link named IfName,
// so AttachContainer could not create its end there.
type IfExistsError struct {
	IfName string
}

func (e *IfExistsError) Error() string {
	return fmt.Sprintf("interface %q already exists in the container", e.IfName)
}

// MismatchError reports a container interface that is not as
// AttachContainer left it.
type MismatchError struct {
	Reason string
}

func (e *MismatchError) Error() string { return e.Reason }

// NetnsError reports a container network namespace that cannot be opened.
type NetnsError struct {
	Path string
	Err  error
}

func (e *NetnsError) Error() string {
	return fmt.Sprintf("open container netns %q: %v", e.Path, e.Err)
}

func (e *NetnsError) Unwrap() error { return e.Err }
