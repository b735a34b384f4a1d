package main

import (
	"encoding/base64"
	"io"
	"path/filepath"
	"unicode/utf8"
)

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

func baseName(path string) string { return filepath.Base(path) }

func isText(b []byte) bool { return utf8.Valid(b) }

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
