package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the plugin binaries the namespace tests run through libcni.
// It is set once by TestMain and only read afterwards; it is empty when the
// tests do not run as root, which is the only case they skip.
var binDir string

// chainPlugin is a reference plugin run after overlay in the chaining test;
// tuning only touches the container's namespace.
const chainPlugin = "github.com/containernetworking/plugins/plugins/meta/tuning"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "overlay-cni-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for name, pkg := range map[string]string{
		"overlay":      "github.com/overlaynet/overlay/plugins/overlay",
		"overlay-ipam": "github.com/overlaynet/overlay/ipam",
		"tuning":       chainPlugin,
	} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}
