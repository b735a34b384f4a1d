package segwal

// lockName is the file in a log's directory that a Log holds locked while
// open (lock_unix.go, lock_windows.go): one writer per directory.
const lockName = "LOCK"
