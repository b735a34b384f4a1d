package main

import (
	"io"
	"path/filepath"
)

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

func baseName(path string) string { return filepath.Base(path) }
