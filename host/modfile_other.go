//go:build !linux

package host

import "os"

// mapModule: files are read, not mapped, on this system (see LoadFile).
func mapModule(*os.File, int64) ([]byte, func()) { return nil, nil }

// fileID: without a portable ctime, module hashes are not remembered.
func fileID(string, os.FileInfo) (fileIdentity, bool) { return fileIdentity{}, false }
