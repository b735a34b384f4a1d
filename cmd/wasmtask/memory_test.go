package main

import (
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"4096", 4096, ""},
		{"512MiB", 512 << 20, ""},
		{"512mib", 512 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"1.5GB", 1_500_000_000, ""},
		{"64k", 64 << 10, ""},
		{"100MB", 100_000_000, ""},
		{" 2 GiB ", 2 << 30, ""},
		{"", 0, "is not a size"},
		{"MiB", 0, "is not a size"},
		{"12 parsecs", 0, "is not a size"},
		{"-1", 0, "is not a size"},
		{"99999999TiB", 0, "is not a size"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseSize(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
	if s := formatBytes(512 << 20); s != "512MiB" {
		t.Errorf("formatBytes(512MiB) = %q", s)
	}
}

// TestDefaultPayloadMemory: the default is an eighth of the memory limit,
// within its bounds, and says where it came from.
func TestDefaultPayloadMemory(t *testing.T) {
	n, source := defaultPayloadMemory()
	limit, _ := memoryLimit()
	if limit <= 0 {
		t.Skip("memory size unknown here")
	}
	want := min(max(limit/8, minPayloadMemory), maxPayloadMemory)
	if n != want || !strings.Contains(source, "memory") && !strings.Contains(source, "cgroup") {
		t.Fatalf("default %d from %q, want %d (1/8 of %d)", n, source, want, limit)
	}
}
