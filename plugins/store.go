package plugins

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmtask/wasmtask/segwal"
)

// store keeps modules content-addressed: <dir>/sha256/<hex>.wasm, written
// once (tmp, fsync, rename, dir fsync) and never changed; reads verify the
// hash.
type store struct{ dir string }

func (s *store) path(version string) (string, error) {
	hexSum, ok := strings.CutPrefix(version, "sha256:")
	if !ok || len(hexSum) != 64 {
		return "", fmt.Errorf("version %q: want sha256:<64 hex digits>", version)
	}
	if _, err := hex.DecodeString(hexSum); err != nil {
		return "", fmt.Errorf("version %q: want sha256:<64 hex digits>", version)
	}
	return filepath.Join(s.dir, "sha256", hexSum+".wasm"), nil
}

func (s *store) put(version string, wasm []byte) error {
	p, err := s.path(version)
	if err != nil {
		return err
	}
	if _, err := s.get(version); err == nil {
		return nil // immutable: already stored (a damaged copy is rewritten)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	return writeAtomic(p, wasm)
}

func (s *store) get(version string) ([]byte, error) {
	p, err := s.path(version)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: module %s is not in the store", ErrNotFound, version)
		}
		return nil, err
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != version {
		return nil, fmt.Errorf("module store: %s does not match its hash (damaged file); redeploy the plugin", p)
	}
	return b, nil
}

// writeAtomic writes b to path through a synced temporary file, a rename
// and a directory sync. The temporary file's name is unique, so concurrent
// writes of one path (two deploys of the same module) do not collide.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(0o640)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return segwal.SyncDir(filepath.Dir(path))
}
