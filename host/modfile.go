package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"
)

// LoadFile is LoadLimits for a module file, for a process that loads a
// module once and exits (wasmtask call), where reading and hashing a large
// module would take a good part of a warm start:
//
//   - with a CacheDir, the module's hash is remembered by the file's
//     identity (path, device, inode, size, mtime and ctime; see fileID), so
//     an unchanged file is not hashed again. A changed file has another
//     ctime, which no user can set; a file changed less than racyAge
//     before it was hashed is not remembered (its next change could fall
//     in the same timestamp tick), as git does for its index.
//   - on Linux, a file of bigModuleBytes or more is mapped rather than
//     copied, under a read lease (F_SETLEASE) held until the load returns:
//     while it is held, any other open for writing or truncate of the file
//     waits, so the bytes cannot change under the hash and the compile.
//     (wazero copies what it keeps, so nothing refers to the mapping
//     afterwards, and neither does a Module.) Without a lease (a file open
//     for writing elsewhere, another user's file, a file system without
//     leases) it is read.
func (h *Host) LoadFile(ctx context.Context, path string, lim Limits) (*Module, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	wasm, release := mapModule(f, fi.Size())
	if wasm == nil {
		if wasm, err = readAll(f, fi.Size()); err != nil {
			return nil, err
		}
	}
	if release != nil {
		defer release()
	}
	// The identity is taken after the read: the bytes are then no newer
	// than it, and a change during the read leaves a recent ctime.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	id, idOK := fileID(path, fi)
	hash := h.knownHash(id, idOK)
	if hash == "" {
		hash = Hash(wasm)
		h.rememberHash(id, idOK, hash)
	}
	m, err := h.loadHashed(ctx, wasm, hash, lim)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// readAll reads the rest of f, of size bytes when it does not change.
func readAll(f *os.File, size int64) ([]byte, error) {
	b := make([]byte, 0, size+1) // +1: EOF without a second allocation
	for {
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// fileIdentity is what says a file did not change since it was hashed.
type fileIdentity struct {
	Path    string `json:"path"`
	Dev     uint64 `json:"dev"`
	Inode   uint64 `json:"inode"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	CtimeNS int64  `json:"ctime_ns"`
}

type hashedFile struct {
	fileIdentity
	Hash string `json:"hash"`
}

// fileHashesDir, under Config.CacheDir, keeps one hashedFile per module
// path (named by the sha256 of the path). PruneCache leaves it.
const fileHashesDir = "files"

// racyAge: a file changed this recently may change again within the same
// timestamp tick (1 s on some file systems, 2 s on FAT) unnoticed.
var racyAge = 3 * time.Second // a var for tests

func (h *Host) hashFile(path string) string {
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(h.cfg.CacheDir, fileHashesDir, hex.EncodeToString(sum[:16])+".json")
}

// knownHash returns the remembered hash of the file id, or "".
func (h *Host) knownHash(id fileIdentity, ok bool) string {
	if !ok || h.cfg.CacheDir == "" {
		return ""
	}
	b, err := os.ReadFile(h.hashFile(id.Path))
	if err != nil {
		return ""
	}
	var e hashedFile
	if json.Unmarshal(b, &e) != nil || e.fileIdentity != id || len(e.Hash) != len("sha256:")+64 || !isHex64(e.Hash[len("sha256:"):]) {
		return ""
	}
	return e.Hash
}

// rememberHash records hash for the file id, unless the file changed too
// recently to be told apart from its next change (racyAge). A failure is
// only a cache miss next time.
func (h *Host) rememberHash(id fileIdentity, ok bool, hash string) {
	if !ok || h.cfg.CacheDir == "" {
		return
	}
	now := time.Now().UnixNano()
	if now-id.CtimeNS < int64(racyAge) || now-id.MtimeNS < int64(racyAge) {
		return
	}
	b, err := json.Marshal(hashedFile{fileIdentity: id, Hash: hash})
	if err != nil {
		return
	}
	file := h.hashFile(id.Path)
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		h.log.Debug("host: remember module hash", "err", err)
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-*")
	if err != nil {
		h.log.Debug("host: remember module hash", "err", err)
		return
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
	}
}
