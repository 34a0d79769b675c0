package netconf

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestValidNameMatchesPattern: the hand-written check accepts exactly what
// the documented pattern does.
func TestValidNameMatchesPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	const alphabet = "aZ09_.-/ :\x00é"
	cases := []string{"", ".", "..", "-a", "a", "default", "blue.2", strings.Repeat("a", 63), strings.Repeat("a", 64), "a/b"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(66))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := validName(c), pattern.MatchString(c); got != want {
			t.Errorf("validName(%q) = %v, the pattern says %v", c, got, want)
		}
	}
}
