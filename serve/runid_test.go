package serve

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestValidRunID: validRunID accepts exactly what the regular expression it replaces accepts,
// on a table of edge cases and on random strings over letters, digits, punctuation and UTF-8.
func TestValidRunID(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	cases := []string{"", "a", "Z", "0", "run-1", "run_1.2", ".hidden", "-x", "_x", "a/b", "a b", "a\x00",
		"é", "aé", "a..", strings.Repeat("a", 128), strings.Repeat("a", 129), "a" + strings.Repeat("-", 127),
		"a" + strings.Repeat("-", 128), "a\n", "\na"}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabets := [][]rune{[]rune("aZ09._-/ \nü"), []rune("aZ09._-")} // the second: mostly valid
	for range 20000 {
		r := alphabets[rng.IntN(2)]
		n := rng.IntN(132)
		if rng.IntN(4) == 0 {
			n = rng.IntN(4)
		}
		var b strings.Builder
		for range n {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		if got, want := validRunID(s), pattern.MatchString(s); got != want {
			t.Errorf("validRunID(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
