package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// owners maps an import path prefix to the only directory whose non-test
// code may import it.
var owners = map[string]string{
	"github.com/vishvananda/netlink": "pkg/datapath",
	"github.com/safchain/ethtool":    "pkg/datapath",
	"go.etcd.io/etcd/client/v3":      "pkg/subnet",
	"github.com/coreos/go-iptables":  "pkg/firewall",
	"github.com/google/nftables":     "pkg/ingress",
	// nftables' own netlink socket (pkg/ingress sizes its send buffer);
	// vishvananda/netlink above is the rtnetlink side.
	"github.com/mdlayher/netlink": "pkg/ingress",
}

// outsiders may import anything: like tests, they stand outside overlayd
// (the bench watches the kernel's notifications and plays other hosts in
// etcd), so going through the owner would measure the owner with itself.
var outsiders = []string{"internal/bench"}

func TestPackageBoundaries(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		if slices.Contains(outsiders, filepath.ToSlash(rel)) {
			return nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for prefix, owner := range owners {
				if strings.HasPrefix(p, prefix) && filepath.ToSlash(rel) != owner {
					t.Errorf("%s imports %s; only %s may (go through it instead)", path, p, owner)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
