package api

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// checkQuery rejects query parameters a route does not know, as unknown
// fields of a body are: a misspelt filter ("?sate=failed") would otherwise
// list everything.
func checkQuery(q url.Values, known ...string) error {
	var unknown []string
	for k := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return &FieldError{Field: unknown[0], Reason: fmt.Sprintf("unknown query parameter (known: %s)", strings.Join(known, ", "))}
}
