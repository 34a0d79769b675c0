// Package cnierr builds the CNI error results of overlay's plugins. The CNI
// spec gives runtimes a handful of codes they act on (retry on 11, report the
// network as not ready on 50); skel turns any other error into 999, which
// tells a runtime nothing. Every error a person can fix or that will pass on
// its own goes through here, with a short stable Msg (runtimes show it in
// events) and Details saying which file or field and what to do.
package cnierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// InvalidConfig (code 7) reports a network config field that cannot be used.
// problem says what is wrong with it and, where useful, what to write instead.
func InvalidConfig(field, problem string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig,
		fmt.Sprintf("invalid network config: field %q", field), problem)
}

// BadArgs (code 4) reports a CNI_* environment variable or CNI_ARGS entry the
// runtime passed that cannot be used.
func BadArgs(name, problem string) *types.Error {
	return types.NewError(types.ErrInvalidEnvironmentVariables,
		fmt.Sprintf("invalid %s", name), problem)
}

// TryAgain (code 11) reports a condition that is expected to clear without a
// change to the config, so the runtime should retry the same request later.
func TryAgain(msg, details string) *types.Error {
	return types.NewError(types.ErrTryAgainLater, msg, details)
}

// Unavailable (code 50) is STATUS's answer while the plugin cannot serve ADD.
func Unavailable(msg, details string) *types.Error {
	return types.NewError(types.ErrPluginNotAvailable, msg, details)
}

// HostFile turns a failure to read the host file at path for network into an
// error carrying code: 11 (try again later) from ADD, 50 (not available) from
// STATUS. Both a missing and an unreadable host file are the host's problem,
// not the network config's: overlayd writes the file, so it is what to fix.
// An edge host's file (err wraps hostfile.ErrEdgeHost) is the exception:
// see EdgeHost.
func HostFile(code uint, path, network string, err error) *types.Error {
	if errors.Is(err, hostfile.ErrEdgeHost) {
		return EdgeHost(code, path, network, err)
	}
	if errors.Is(err, hostfile.ErrNotExist) {
		return types.NewError(code,
			fmt.Sprintf("host file %s not found", path),
			fmt.Sprintf("overlayd has not leased a subnet for network %q on this host yet; is overlayd running?", network))
	}
	return types.NewError(code,
		fmt.Sprintf("host file %s is unusable", path),
		fmt.Sprintf("%v; overlayd writes this file for network %q: restart overlayd so it rewrites it", err, network))
}

// EdgeHost reports that this machine serves network as an edge host
// (overlayd --mode edge), which the host file at path says and err, from
// hostfile.ReadContainerHost, explains with the machine's overlay address.
// STATUS keeps its 50 (the network is not available here); any other code
// becomes 7: the conflist names a network this machine has no container
// subnet of, and that holds until someone reconfigures the machine, so 11
// would only have the runtime retry in vain.
func EdgeHost(code uint, path, network string, err error) *types.Error {
	if code != types.ErrPluginNotAvailable {
		code = types.ErrInvalidNetworkConfig
	}
	return types.NewError(code,
		fmt.Sprintf("network %q: this machine is an edge host", network),
		fmt.Sprintf("%v. overlayd runs here with --mode edge, so containers cannot be started on network %q on this machine. "+
			"Start them on a container host of the network, or make this machine one: stop overlayd, run `%s`, "+
			"and start overlayd without --mode edge", err, network, teardownCommand(path, network)))
}

// RefuseEdgeHost is ADD's error (code 7) when the host file at path is an
// edge host's, nil otherwise. CHECK uses it instead of reading the host file
// whole: a container keeps working while the file is briefly missing
// (overlayd restarting), but on an edge host no container can have network.
func RefuseEdgeHost(path, network string) error {
	if _, err := hostfile.ReadContainerHost(path); errors.Is(err, hostfile.ErrEdgeHost) {
		return EdgeHost(types.ErrInvalidNetworkConfig, path, network, err)
	}
	return nil
}

// teardownCommand is the overlayctl command line that removes network's
// state on this machine, given its host file's path; it names the run dir
// only when it is not overlayctl's default, so it can be pasted as is.
func teardownCommand(path, network string) string {
	cmd := "overlayctl --network " + network
	if dir := filepath.Dir(path); dir != hostfile.DefaultRunDir {
		cmd += " --run-dir " + dir
	}
	return cmd + " teardown"
}

// NotReady (code 50) is STATUS's answer when overlayd's ready stamp at path
// fails hostfile.CheckReady (err): missing, stale or unreadable. The stamp
// is overlayd saying it is alive and reconciling, so the fix is on the
// daemon's side, whatever the reason.
func NotReady(path string, err error) *types.Error {
	const check = "overlayd is not running or not ready: check `systemctl status overlayd` and its log (`journalctl -u overlayd`)"
	switch {
	case errors.Is(err, hostfile.ErrNotExist):
		return Unavailable(fmt.Sprintf("overlayd is not ready: ready stamp %s not found", path),
			"overlayd writes it after every successful reconcile pass and removes it when it loses its lease; "+check)
	case errors.Is(err, hostfile.ErrStale):
		return Unavailable(fmt.Sprintf("overlayd is not ready: ready stamp %s is stale", path),
			fmt.Sprintf("%v; %s", err, check))
	}
	return Unavailable(fmt.Sprintf("overlayd is not ready: ready stamp %s is unusable", path),
		fmt.Sprintf("%v; %s", err, check))
}

// Decode (code 7) reports a network config that is valid JSON (skel checks
// that) but does not fit the plugin's config, naming the field when the JSON
// decoder knows it.
func Decode(err error) *types.Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return InvalidConfig(typeErr.Field,
			fmt.Sprintf("the value is a JSON %s, but it must be a %s", typeErr.Value, typeErr.Type))
	}
	return types.NewError(types.ErrInvalidNetworkConfig, "invalid network config", err.Error())
}

// IOFailure (code 5) reports a failure to read or change the kernel's or
// the disk's state that is neither the config's nor the runtime's fault.
func IOFailure(msg, details string) *types.Error {
	return types.NewError(types.ErrIOFailure, msg, details)
}

// DecodeResult (code 6) reports a result (an IPAM plugin's, or the cached
// prevResult) that does not decode.
func DecodeResult(what string, err error) *types.Error {
	return types.NewError(types.ErrDecodingFailure, "cannot decode "+what, err.Error())
}

// CodeAttachmentChanged is overlay's own code (the spec leaves 100 and up
// to plugins) for a CHECK that finds the attachment no longer as ADD left
// it: the container's interface missing, down or without its address, or
// the address no longer reserved for it.
const CodeAttachmentChanged uint = 100

// AttachmentChanged (code 100) is CHECK's answer when the attachment
// differs from what ADD made; problem says how.
func AttachmentChanged(problem string) *types.Error {
	return types.NewError(CodeAttachmentChanged, "the attachment is not as ADD left it",
		problem+"; something outside the runtime changed the container's network: DEL the attachment and ADD it again (restart the container or pod)")
}

// Wrap gives err, if it carries a CNI code, the same code with context
// prefixed to its message (skel would otherwise unwrap it and drop the
// context); any other error becomes an IOFailure saying what failed.
func Wrap(context string, err error) *types.Error {
	var ce *types.Error
	if errors.As(err, &ce) {
		return types.NewError(ce.Code, context+": "+ce.Msg, ce.Details)
	}
	return IOFailure(context, err.Error())
}

// Coded returns err as an error skel passes to the runtime with a code the
// spec defines: err itself if it is a *types.Error; if it wraps or joins
// any, the first one's code and message with all of err's text as details
// (skel would keep only that first error, and drop the rest); else code 5
// with err's text. skel answers 999 for anything else.
func Coded(err error) error {
	if err == nil {
		return nil
	}
	if ce, ok := err.(*types.Error); ok {
		return ce
	}
	var ce *types.Error
	if errors.As(err, &ce) {
		return types.NewError(ce.Code, ce.Msg, err.Error())
	}
	return IOFailure(err.Error(), "")
}

// CodedVerb wraps a CNI verb so that every error it returns is Coded.
func CodedVerb(verb func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error { return Coded(verb(args)) }
}
