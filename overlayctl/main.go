// Command overlayctl is the operator's tool for overlay: it writes network
// configs, lists and releases leases, shows this host's state and tears it
// down; every command prints a table, or JSON with -o json (output.go). It
// owns nothing; it reads etcd, the host file and the kernel.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	root, done := newRootCmd()
	err := root.Execute()
	done()
	var diagnosis whyExit
	switch {
	case errors.As(err, &diagnosis):
		os.Exit(diagnosis.code) // the output already says what broke
	case err != nil:
		fmt.Fprintln(os.Stderr, "overlayctl:", err)
		os.Exit(1)
	}
}
