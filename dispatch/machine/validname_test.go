package machine

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The forms validID and validHandler check, as the regexps they replace.
var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$`)
	handlerPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,62}(@sha256:[0-9a-f]{64})?$`)
)

// TestValidNamesMatchPatterns: validID and validHandler accept exactly
// what the regexps accept, on edge cases and on random strings drawn from
// the characters that matter.
func TestValidNamesMatchPatterns(t *testing.T) {
	hex64 := strings.Repeat("0a", 32)
	cases := []string{
		"", "a", "A", "0", "-a", ".a", "a-", "a.b:c_d-e", "A.B", "a b", "ä", "a\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 127), strings.Repeat("a", 128), strings.Repeat("a", 129),
		"noop@sha256:" + hex64, "noop@sha256:" + hex64[:63], "noop@sha256:" + strings.ToUpper(hex64), "noop@sha256:" + hex64 + "0",
		"noop@", "@sha256:" + hex64, "noop@sha512:" + hex64, "no@op@sha256:" + hex64, "Noop", "no_op-1",
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09._:-@ sha256:fF\x00"
	for range 20000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b), "noop@sha256:"+hex64[:60]+string(b))
	}
	for _, c := range cases {
		if got, want := validID(c), idPattern.MatchString(c); got != want {
			t.Errorf("validID(%q) = %v, the pattern says %v", c, got, want)
		}
		if got, want := validHandler(c), handlerPattern.MatchString(c); got != want {
			t.Errorf("validHandler(%q) = %v, the pattern says %v", c, got, want)
		}
	}
}
