package segwal

import (
	"fmt"
	"os"
)

// SyncDir fsyncs directory dir, so that a file created, renamed or removed
// in it survives a crash (the file's own fsync does not cover its name).
// The WAL, the engine's snapshots and the plugin store all use it. The
// error names the directory.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
