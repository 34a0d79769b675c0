package datapath

import (
	"fmt"
	"slices"
	"strings"

	"github.com/safchain/ethtool"
)

// Tx checksum offload on the VXLAN device: the kernel's VXLAN device
// offers one tx checksum feature, tx-checksum-ip-generic (NETIF_F_HW_CSUM),
// and leaves the inner packet's checksum to whatever device sends the
// encapsulated packet. Some NICs and hypervisors compute it wrong for
// encapsulated packets, so the receiver drops them as corrupt (flannel
// #2152, Calico #3145: "ethtool -K flannel.1 tx off" is their fix). Turning
// it off makes the kernel compute the checksum in software before
// encapsulation; the kernel also turns off what depends on it
// (segmentation offloads), which costs CPU on bulk traffic.

// txChecksumPrefix names every tx checksum feature (ethtool -k); `ethtool
// -K dev tx on|off` switches all of them that the device can change.
const txChecksumPrefix = "tx-checksum-"

// TxChecksumOffload reports whether tx checksum offload is on for device
// (in the calling thread's network namespace): whether any tx checksum
// feature the device can change is active.
func TxChecksumOffload(device string) (bool, error) {
	e, err := ethtool.NewEthtool()
	if err != nil {
		return false, fmt.Errorf("open ethtool socket: %w", err)
	}
	defer e.Close()
	_, active, err := txChecksumFeatures(e, device)
	if err != nil {
		return false, err
	}
	return len(active) > 0, nil
}

// SetTxChecksumOffload turns tx checksum offload on or off for device, as
// `ethtool -K device tx on|off` does, and checks that the kernel did.
func SetTxChecksumOffload(device string, on bool) error {
	e, err := ethtool.NewEthtool()
	if err != nil {
		return fmt.Errorf("open ethtool socket: %w", err)
	}
	defer e.Close()
	names, _, err := txChecksumFeatures(e, device)
	if err != nil {
		return err
	}
	change := make(map[string]bool, len(names))
	for _, n := range names {
		change[n] = on
	}
	if err := e.Change(device, change); err != nil {
		return fmt.Errorf("set %s to %v on %s: %w", strings.Join(names, ", "), onOff(on), device, err)
	}
	_, active, err := txChecksumFeatures(e, device)
	if err != nil {
		return err
	}
	if (len(active) > 0) != on {
		return fmt.Errorf("set %s to %v on %s: the kernel left active: %v", strings.Join(names, ", "), onOff(on), device, active)
	}
	return nil
}

// txChecksumFeatures returns the tx checksum features device can change,
// and those of them that are active, sorted.
func txChecksumFeatures(e *ethtool.Ethtool, device string) (changeable, active []string, err error) {
	fs, err := e.FeaturesWithState(device)
	if err != nil {
		return nil, nil, fmt.Errorf("read offload features of %s: %w", device, err)
	}
	for name, st := range fs {
		if !strings.HasPrefix(name, txChecksumPrefix) || !st.Available {
			continue
		}
		changeable = append(changeable, name)
		if st.Active {
			active = append(active, name)
		}
	}
	if len(changeable) == 0 {
		return nil, nil, fmt.Errorf("%s offers no tx checksum offload that can be changed", device)
	}
	slices.Sort(changeable)
	slices.Sort(active)
	return changeable, active, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
