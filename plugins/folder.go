package plugins

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// The watched folder is read through an os.Root: a symbolic link is
// followed only when it is relative and stays inside the folder (links
// between files of the folder keep working); a link that leaves the folder
// (absolute, or climbing out with "..") is refused without reading its
// target, so a deployer who can write to the folder cannot make the server
// read, log or activate a file elsewhere. Only regular files are read, and
// no more than a bound: a FIFO or a device never blocks or floods a deploy.

// errOutsideFolder: a symbolic link in the folder leads outside it.
var errOutsideFolder = errors.New("is a symbolic link that leads outside the plugin folder (only relative links to files inside the folder are followed)")

// readFolderFile reads name from root: a regular file of at most limit
// bytes. It returns the file's info (of the target, for a link) for the
// caller's stability check. Errors never quote the file's content.
func readFolderFile(root *os.Root, name string, limit int64) ([]byte, fs.FileInfo, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
	// refused as not a regular file.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		if fi, lerr := root.Lstat(name); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, nil, errOutsideFolder
		}
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("is not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, nil, fmt.Errorf("is %d bytes, the limit is %d", fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(b)) > limit {
		return nil, nil, fmt.Errorf("grew past the limit of %d bytes while being read", limit)
	}
	return b, fi, nil
}

// maxManifestBytes bounds a manifest file in the watched folder.
const maxManifestBytes = 1 << 20
