package main

import (
	"encoding/base64"
	"io"
	"io/fs"
	"path/filepath"
	"unicode/utf8"

	"github.com/wasmtask/wasmtask/api"
)

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

func baseName(path string) string { return filepath.Base(path) }

func isText(b []byte) bool { return utf8.Valid(b) }

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// diskUsage sums the files of the data dir's parts for GET /v1/engine.
func diskUsage(dataDir string) api.DiskUsage {
	size := func(dir string) int64 {
		var n int64
		filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
		return n
	}
	return api.DiskUsage{WALBytes: size(filepath.Join(dataDir, "engine", "wal")),
		SnapshotBytes: size(filepath.Join(dataDir, "engine", "snapshots")),
		PluginBytes:   size(filepath.Join(dataDir, "plugins"))}
}
