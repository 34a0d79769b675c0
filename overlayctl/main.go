// Command overlayctl is the operator's tool for overlay: it writes network
// configs, lists and releases leases, shows this host's state and tears it
// down; every command prints a table, or JSON with -o json (output.go). It
// owns nothing; it reads etcd, the host file and the kernel.
package main

import (
	"fmt"
	"os"
)

func main() {
	root, done := newRootCmd()
	err := root.Execute()
	done()
	if err != nil {
		fmt.Fprintln(os.Stderr, "overlayctl:", err)
		os.Exit(1)
	}
}
