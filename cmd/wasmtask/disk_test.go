package main

import (
	"strings"
	"testing"
)

func TestMinFreeDiskFlag(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		flag    string
		want    int64 // -2: positive, below the filesystem's size
		wantErr string
	}{
		{"", 0, ""},
		{"0", -1, ""},
		{"64MiB", 64 << 20, ""},
		{"64 mib", 64 << 20, ""},
		{"1GB", 1e9, ""},
		{"512k", 512 << 10, ""},
		{"1048576", 1 << 20, ""},
		{"1.5GiB", 3 << 29, ""},
		{"1%", -2, ""},
		{"0%", -1, ""},
		{"lots", 0, `"lots" is not a size`},
		{"-5MiB", 0, "not a size"},
		{"150%", 0, "percentage must be"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			got, err := minFreeDisk(tc.flag, dir)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("minFreeDisk(%q) = %d, %v; want an error containing %q", tc.flag, got, err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("minFreeDisk(%q): %v", tc.flag, err)
			case tc.want == -2:
				if got <= 0 {
					t.Fatalf("minFreeDisk(%q) = %d, want a positive share of the filesystem", tc.flag, got)
				}
			case got != tc.want:
				t.Fatalf("minFreeDisk(%q) = %d, want %d", tc.flag, got, tc.want)
			}
		})
	}
}
