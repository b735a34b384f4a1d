package host

import (
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// mapModule maps f (size bytes) read-only under a read lease (LoadFile),
// or returns nil when it cannot: a small file, no lease to be had.
// release unmaps it and gives up the lease.
func mapModule(f *os.File, size int64) (wasm []byte, release func()) {
	if size < bigModuleBytes || int64(int(size)) != size {
		return nil, nil
	}
	fd := int(f.Fd())
	// Fails with EAGAIN while anyone has the file open for writing, EACCES
	// on another user's file (without CAP_LEASE), EINVAL where the file
	// system has no leases.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		return nil, nil
	}
	unlease := func() { unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK) }
	// The size may have changed between Stat and the lease.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != size {
		unlease()
		return nil, nil
	}
	b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		unlease()
		return nil, nil
	}
	return b, func() {
		unix.Munmap(b)
		unlease()
	}
}

// fileID returns the identity of the file at path (LoadFile).
func fileID(path string, fi os.FileInfo) (fileIdentity, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	abs, err := filepath.Abs(path)
	if !ok || err != nil {
		return fileIdentity{}, false
	}
	return fileIdentity{Path: abs, Dev: uint64(st.Dev), Inode: st.Ino, Size: st.Size,
		MtimeNS: st.Mtim.Nano(), CtimeNS: st.Ctim.Nano()}, true
}
