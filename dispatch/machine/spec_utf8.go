package machine

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// checkSpecUTF8 rejects a task spec whose JSON text is not valid UTF-8,
// or holds an escaped lone surrogate ("\ud800"), naming the member:
// encoding/json would silently replace those with U+FFFD and the handler
// would get other bytes than the client sent. Bytes that are not UTF-8
// text belong in input_b64.
func checkSpecUTF8(b []byte) error {
	if utf8.Valid(b) && !bytes.Contains(b, []byte(`\u`)) {
		return nil // the usual case: nothing to look at
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return badTextAt("body", b, 0) // not an object: Decode reports it, unless the text itself is bad
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil // Decode reports it
		}
		if err := badTextAt(key, b[start:dec.InputOffset()], int(start)); err != nil {
			return err
		}
	}
	return nil
}

func badTextAt(field string, seg []byte, base int) error {
	i := badText(seg)
	if i < 0 {
		return nil
	}
	if field == "input" {
		return fieldErr("input", "is not valid UTF-8 text (byte %d of the spec); send bytes that are not UTF-8 as input_b64 (base64) instead", base+i)
	}
	return fieldErr(field, "is not valid UTF-8 text (byte %d of the spec)", base+i)
}

// badText returns the offset of the first invalid UTF-8 sequence or lone
// surrogate escape in JSON text, or -1.
func badText(b []byte) int {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\\' && i+1 < len(b) && b[i+1] == 'u':
			r, ok := hex4(b, i+2)
			switch {
			case !ok:
				i += 2
			case r >= 0xD800 && r < 0xDC00: // high surrogate: a low one must follow
				if lo, ok := hex4(b, i+8); ok && i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' && lo >= 0xDC00 && lo < 0xE000 {
					i += 12
					continue
				}
				return i
			case r >= 0xDC00 && r < 0xE000:
				return i
			default:
				i += 6
			}
		case c == '\\':
			i += 2
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return i
			}
			i += n
		}
	}
	return -1
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
