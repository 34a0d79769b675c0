package datapath

import (
	"strings"
	"testing"

	"github.com/safchain/ethtool"
)

func TestTxChecksumOffload(t *testing.T) {
	t.Parallel()
	host, spec := hostWithVXLAN(t)
	// generic reads the one feature the kernel's VXLAN device offers,
	// straight from the library, as a check on the functions under test.
	generic := func() bool {
		e, err := ethtool.NewEthtool()
		if err != nil {
			t.Error(err)
			return false
		}
		defer e.Close()
		fs, err := e.FeaturesWithState(spec.Name)
		if err != nil {
			t.Error(err)
		}
		return fs["tx-checksum-ip-generic"].Active
	}
	check := func(want bool) {
		t.Helper()
		do(t, host, func() error {
			on, err := TxChecksumOffload(spec.Name)
			if err != nil {
				return err
			}
			if on != want || generic() != want {
				t.Errorf("tx checksum offload reads %v (tx-checksum-ip-generic %v), want %v", on, generic(), want)
			}
			return nil
		})
	}
	check(true) // the kernel's default for a new VXLAN device
	do(t, host, func() error { return SetTxChecksumOffload(spec.Name, false) })
	check(false)
	do(t, host, func() error { return SetTxChecksumOffload(spec.Name, false) }) // idempotent
	check(false)
	do(t, host, func() error { return SetTxChecksumOffload(spec.Name, true) })
	check(true)

	do(t, host, func() error {
		_, err := TxChecksumOffload("nosuchdev")
		if err == nil || !strings.Contains(err.Error(), "nosuchdev") {
			t.Errorf("missing device: %v, want an error naming it", err)
		}
		return nil
	})
}
