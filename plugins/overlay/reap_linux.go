package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/overlaynet/overlay/pkg/datapath"
)

// reapEnv, set to "INDEX NAME", makes the plugin binary a veth reaper
// instead of a CNI plugin: it deletes that host veth and exits.
const reapEnv = "OVERLAY_REAP_VETH"

// deleteVethDetached deletes a disarmed veth pair after DEL has answered.
// The kernel takes 15 to 25 ms (RCU grace periods) to delete a veth pair,
// longer than all the rest of a DEL, and nothing about it is left for the
// runtime to wait for: the container's address is already off its
// interface and released. So a detached copy of this binary deletes the
// pair by its host end; it holds nothing of the container's (an open fd on
// the netns would make a runtime's unmount of it fail with EBUSY). If the
// copy cannot start, the pair is deleted here. An ADD for the same
// container that comes before the copy is done finds the disarmed
// interface and deletes it itself (see add). If the copy dies before
// deleting, the pair stays, down and without an address, until that or CNI
// GC removes it (its alias names the attachment).
func deleteVethDetached(v datapath.HostVeth) error {
	if err := startReaper(v); err != nil {
		return datapath.DeleteHostVeth(v)
	}
	return nil
}

func startReaper(v datapath.HostVeth) error {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{fmt.Sprintf("%s=%d %s", reapEnv, v.Index, v.Name)}
	// Its own session: the runtime's signals to the plugin's process group
	// do not reach it, and no stdio ties the runtime to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// reapVeth is the reaper's whole life; it returns the exit status.
func reapVeth(spec string) int {
	idx, name, ok := strings.Cut(spec, " ")
	index, err := strconv.Atoi(idx)
	if !ok || err != nil {
		return 2
	}
	if err := datapath.DeleteHostVeth(datapath.HostVeth{Index: index, Name: name}); err != nil {
		return 1
	}
	return 0
}
