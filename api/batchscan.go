package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// batchScanner reads a batch body, {"tasks": [spec, ...]}, from a stream:
// the object's structure byte by byte, each element of the array whole
// (its raw JSON, one at a time, in one buffer). encoding/json's Decoder
// did the same at four times the cost: it scans each element twice
// (once to find its end, once to copy it) and allocates per token.
// The elements themselves are checked by the spec decoders; one that is
// not valid JSON refuses the whole batch, as any syntax error does.
type batchScanner struct {
	r   *bufio.Reader
	buf []byte // the current element
}

func newBatchScanner(body io.Reader) *batchScanner {
	return &batchScanner{r: bufio.NewReaderSize(body, 32<<10)}
}

// errEarlyEnd: the body ended inside the batch object.
var errEarlyEnd = &FieldError{Field: "body", Reason: "the JSON ends too early"}

// readErr maps a read error: the end of the body, or the reader's (such as
// http.MaxBytesError, which the caller answers with 413).
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errEarlyEnd
	}
	return err
}

// syntaxErr is a syntax error at c, worded as encoding/json words it.
func syntaxErr(c byte, context string) error {
	return &FieldError{Field: "body", Reason: fmt.Sprintf("invalid JSON: invalid character %s %s", quoteChar(c), context)}
}

// quoteChar formats c as encoding/json's syntax errors do.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// next skips white space and returns the next byte, consumed.
func (sc *batchScanner) next() (byte, error) {
	for {
		c, err := sc.r.ReadByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

// atEnd reports whether only white space is left.
func (sc *batchScanner) atEnd() (bool, error) {
	_, err := sc.next()
	if err == io.EOF {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, nil
}

// str reads the rest of a string whose opening quote was read, appending
// its raw bytes (escapes kept, the closing quote included) to sc.buf.
func (sc *batchScanner) str() error {
	for {
		chunk, err := sc.r.ReadSlice('"')
		if err == bufio.ErrBufferFull {
			sc.buf = append(sc.buf, chunk...)
			continue
		}
		if err != nil {
			return err
		}
		sc.buf = append(sc.buf, chunk...)
		// The quote ends the string unless an odd number of backslashes
		// escapes it.
		n := 0
		for i := len(sc.buf) - 2; i >= 0 && sc.buf[i] == '\\'; i-- {
			n++
		}
		if n%2 == 0 {
			return nil
		}
	}
}

// key reads an object member's name, its opening quote read.
func (sc *batchScanner) key() (string, error) {
	sc.buf = append(sc.buf[:0], '"')
	if err := sc.str(); err != nil {
		return "", err
	}
	var k string
	if err := json.Unmarshal(sc.buf, &k); err != nil {
		return "", jsonFieldError(err)
	}
	return k, nil
}

// value reads one JSON value whose first byte c was read into sc.buf:
// up to its matching bracket, its closing quote, or the end of a scalar.
// Only the brackets are matched here: the caller checks the rest.
func (sc *batchScanner) value(c byte) ([]byte, error) {
	sc.buf = append(sc.buf[:0], c)
	switch c {
	case '"':
		return sc.buf, sc.str()
	case '{', '[':
	default:
		for { // a number, true, false, null or a syntax error
			c, err := sc.r.ReadByte()
			if err != nil {
				return nil, err
			}
			switch c {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				sc.r.UnreadByte()
				return sc.buf, nil
			}
			sc.buf = append(sc.buf, c)
		}
	}
	depth := 1
	for depth > 0 {
		c, err := sc.r.ReadByte()
		if err != nil {
			return nil, err
		}
		sc.buf = append(sc.buf, c)
		switch c {
		case '"':
			if err := sc.str(); err != nil {
				return nil, err
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
	}
	return sc.buf, nil
}

// startsValue reports whether c can start a JSON value.
func startsValue(c byte) bool {
	switch c {
	case '{', '[', '"', 't', 'f', 'n', '-':
		return true
	}
	return c >= '0' && c <= '9'
}

// invalidElement is the syntax error of an element that is not valid
// JSON, or nil.
func invalidElement(raw []byte) error {
	if json.Valid(raw) {
		return nil
	}
	var v json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil {
		return jsonFieldError(err)
	}
	return &FieldError{Field: "body", Reason: "invalid JSON"}
}
