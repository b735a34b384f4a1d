package segwal

import (
	"encoding/binary"
	"fmt"
)

// s2Walk reads the operations of an S2 block (klauspost/compress/s2's
// block format, after its length varint) without writing any output, and
// returns the number of bytes they decode to. It makes the checks
// s2.Decode makes (tag lengths inside the block, copy offsets inside what
// was decoded so far, never past limit), so a block that passes decodes
// to exactly that length. The reader walks a frame before it allocates
// the frame's decoded size: a forged frame (its CRC valid) whose header
// and varint claim far more than its operations produce is rejected
// without the allocation.
func s2Walk(src []byte, limit int) (int, error) {
	corrupt := func(s int) (int, error) { return 0, fmt.Errorf("s2 block corrupt at byte %d", s) }
	var d, s, offset, length int
	for s < len(src) {
		switch src[s] & 0x03 {
		case 0x00: // literal
			x := uint32(src[s] >> 2)
			switch {
			case x < 60:
				s++
			case x == 60:
				if s += 2; s > len(src) {
					return corrupt(s)
				}
				x = uint32(src[s-1])
			case x == 61:
				if s += 3; s > len(src) {
					return corrupt(s)
				}
				x = uint32(src[s-2]) | uint32(src[s-1])<<8
			case x == 62:
				if s += 4; s > len(src) {
					return corrupt(s)
				}
				x = uint32(src[s-3]) | uint32(src[s-2])<<8 | uint32(src[s-1])<<16
			default: // 63
				if s += 5; s > len(src) {
					return corrupt(s)
				}
				x = uint32(src[s-4]) | uint32(src[s-3])<<8 | uint32(src[s-2])<<16 | uint32(src[s-1])<<24
			}
			length = int(x) + 1
			if length <= 0 || length > limit-d || length > len(src)-s {
				return corrupt(s)
			}
			d += length
			s += length
			continue
		case 0x01: // copy with a 1-byte offset, or a repeat of the last offset
			if s += 2; s > len(src) {
				return corrupt(s)
			}
			length = int(src[s-2]) >> 2 & 0x7
			if toffset := int(uint32(src[s-2])&0xe0<<3 | uint32(src[s-1])); toffset != 0 {
				offset = toffset
			} else {
				switch length {
				case 5:
					if s += 1; s > len(src) {
						return corrupt(s)
					}
					length = int(src[s-1]) + 4
				case 6:
					if s += 2; s > len(src) {
						return corrupt(s)
					}
					length = int(uint32(src[s-2])|uint32(src[s-1])<<8) + 1<<8
				case 7:
					if s += 3; s > len(src) {
						return corrupt(s)
					}
					length = int(uint32(src[s-3])|uint32(src[s-2])<<8|uint32(src[s-1])<<16) + 1<<16
				}
			}
			length += 4
		case 0x02: // copy with a 2-byte offset
			if s += 3; s > len(src) {
				return corrupt(s)
			}
			length = 1 + int(src[s-3])>>2
			offset = int(binary.LittleEndian.Uint16(src[s-2:]))
		default: // copy with a 4-byte offset
			if s += 5; s > len(src) {
				return corrupt(s)
			}
			length = 1 + int(src[s-5])>>2
			offset = int(binary.LittleEndian.Uint32(src[s-4:]))
		}
		if offset <= 0 || d < offset || length > limit-d {
			return corrupt(s)
		}
		d += length
	}
	return d, nil
}
