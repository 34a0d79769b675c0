package subnet

import (
	"slices"
	"testing"
)

func TestParseEndpoints(t *testing.T) {
	cases := map[string][]string{
		"":                                    nil,
		" , ,":                                nil,
		"http://10.0.0.5:2379":                {"http://10.0.0.5:2379"},
		" http://a:2379 ,, https://b:2379 , ": {"http://a:2379", "https://b:2379"},
	}
	for in, want := range cases {
		if got := ParseEndpoints(in); !slices.Equal(got, want) {
			t.Errorf("ParseEndpoints(%q) = %q, want %q", in, got, want)
		}
	}
}
