package segwal

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentSuffix = ".seg"
	tempSuffix    = ".tmp"
	nameDigits    = 20 // a uint64 in decimal, so lexical order is numeric order
)

// segment is one file of the log, named by the sequence of its first record.
type segment struct {
	first uint64
	path  string
	size  int64 // bytes of valid data (header and whole frames)
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", nameDigits, first, segmentSuffix)
}

// parseSegmentName returns the first sequence named by a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != nameDigits {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

func segmentHeader() []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint32(b[8:], segmentVersion)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
	return b
}

func checkSegmentHeader(w *window) error {
	if w.size < segmentHeaderSize {
		return fmt.Errorf("%w: file of %d bytes, the header needs %d", ErrBadSegmentHeader, w.size, segmentHeaderSize)
	}
	b, err := w.bytes(0, segmentHeaderSize)
	if err != nil {
		return err
	}
	if string(b[:8]) != segmentMagic {
		return fmt.Errorf("%w: magic %q, want %q", ErrBadSegmentHeader, b[:8], segmentMagic)
	}
	if got := crc32.Checksum(b[:12], castagnoli); got != binary.LittleEndian.Uint32(b[12:]) {
		return fmt.Errorf("%w: header checksum mismatch", ErrBadSegmentHeader)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != segmentVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrBadSegmentHeader, v, segmentVersion)
	}
	return nil
}

// listDir returns the segments of dir in sequence order and the names of
// leftover temporary files.
func listDir(dir string) (segs []segment, temps []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tempSuffix) {
			temps = append(temps, name)
			continue
		}
		if first, ok := parseSegmentName(name); ok && e.Type().IsRegular() {
			segs = append(segs, segment{first: first, path: filepath.Join(dir, name)})
		}
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	return segs, temps, nil
}

// createSegment makes a new, empty segment atomically: the header goes into
// a temporary file that is synced and then renamed, and the directory is
// synced, so a crash leaves either no segment or a whole one.
func createSegment(dir string, first uint64) (segment, error) {
	tmp, err := prepareSegment(dir, first)
	if err != nil {
		return segment{}, err
	}
	return installSegment(dir, tmp, first)
}

// prepareSegment writes the header of segment first into a temporary file
// and syncs it. Open removes such a file if a crash leaves it.
func prepareSegment(dir string, first uint64) (tmp string, err error) {
	final := filepath.Join(dir, segmentName(first))
	tmp = final + tempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return "", fmt.Errorf("create segment: %w", err)
	}
	_, err = f.Write(segmentHeader())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("create segment %s: %w", final, err)
	}
	return tmp, nil
}

// installSegment renames a prepared segment into place and syncs dir.
func installSegment(dir, tmp string, first uint64) (segment, error) {
	final := filepath.Join(dir, segmentName(first))
	err := os.Rename(tmp, final)
	if err == nil {
		err = SyncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return segment{}, fmt.Errorf("create segment %s: %w", final, err)
	}
	return segment{first: first, path: final, size: segmentHeaderSize}, nil
}
