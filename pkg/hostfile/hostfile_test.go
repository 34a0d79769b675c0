package hostfile

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sample() HostFile {
	return HostFile{
		Network: netip.MustParsePrefix("10.244.0.0/16"),
		Subnet:  netip.MustParsePrefix("10.244.3.0/24"),
		Gateway: netip.MustParseAddr("10.244.3.1"),
		MTU:     1450, Bridge: "overlay0", VNI: 1,
	}
}

func TestWriteRead(t *testing.T) {
	p := Path(t.TempDir(), "default")
	if err := Write(p, sample()); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil || got != sample() {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	data, _ := os.ReadFile(p)
	want := `{"network":"10.244.0.0/16","subnet":"10.244.3.0/24","gateway":"10.244.3.1","mtu":1450,"bridge":"overlay0","vni":1,"ipMasq":false}`
	if strings.TrimSpace(string(data)) != want {
		t.Fatalf("file content\n%s\nwant\n%s", data, want)
	}
	// No temp files are left beside it.
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the host file", len(entries))
	}
}

func TestReadMissing(t *testing.T) {
	_, err := Read(Path(t.TempDir(), "default"))
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func TestReadInvalid(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"garbage":         `{`,
		"gateway outside": `{"network":"10.244.0.0/16","subnet":"10.244.3.0/24","gateway":"10.244.4.1","mtu":1450,"bridge":"overlay0"}`,
		"no bridge":       `{"network":"10.244.0.0/16","subnet":"10.244.3.0/24","gateway":"10.244.3.1","mtu":1450}`,
		"tiny mtu":        `{"network":"10.244.0.0/16","subnet":"10.244.3.0/24","gateway":"10.244.3.1","mtu":100,"bridge":"overlay0"}`,
		"subnet outside":  `{"network":"10.244.0.0/16","subnet":"10.9.3.0/24","gateway":"10.9.3.1","mtu":1450,"bridge":"overlay0"}`,
	}
	for name, content := range cases {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(content), 0o644)
		if _, err := Read(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want an error naming %s", name, err, p)
		}
	}
	if err := Write(filepath.Join(dir, "x.json"), HostFile{}); err == nil {
		t.Error("Write accepted an empty host file")
	}
}

func TestValidateLocation(t *testing.T) {
	if field, err := ValidateLocation("default", DefaultRunDir); err != nil {
		t.Fatalf("default location: field %q: %v", field, err)
	}
	cases := []struct{ network, runDir, field string }{
		{"", DefaultRunDir, "network"},
		{"../x", DefaultRunDir, "network"},
		{"default", "run/overlay", "runDir"},
		{"default", "", "runDir"},
	}
	for _, c := range cases {
		if field, err := ValidateLocation(c.network, c.runDir); err == nil || field != c.field {
			t.Errorf("ValidateLocation(%q, %q) = %q, %v; want an error on field %q", c.network, c.runDir, field, err, c.field)
		}
	}
}
