package wasmtask_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// mdMention is a path or name ending in .md, as prose and comments
	// write it ("docs/cli.md", "ABI.md", "sdk/ABI.md").
	mdMention = regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
	// mdLink is the target of a Markdown link, up to an optional #anchor.
	mdLink = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)
)

// skipDirs are folders of build output and dependencies, not the
// repository's own text.
var skipDirs = map[string]bool{".git": true, "node_modules": true, "target": true, "out": true, "bin": true, "wasmtask-data": true}

// TestDocumentsExist fails when a message, comment or document in the
// repository names a document (a *.md path) that is not in the
// repository, or when a Markdown link points at a missing file. A bare
// name ("ABI.md") may live anywhere in the repository; a path is read
// from the repository root or from the folder of the file naming it.
func TestDocumentsExist(t *testing.T) {
	byName := map[string]bool{} // base names of the repository's .md files
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".md") {
			byName[d.Name()] = true
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".sh", ".wat", ".rs", ".c", ".h", ".ts", ".json", ".toml", ".txt", ".html", ".js", ".yml", ".yaml":
			files = append(files, path)
		default:
			if d.Name() == "Makefile" {
				files = append(files, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text, dir := string(b), filepath.Dir(file)
		for _, loc := range mdMention.FindAllStringIndex(text, -1) {
			name := text[loc[0]:loc[1]]
			if loc[0] >= 3 && text[loc[0]-3:loc[0]] == "://" || strings.HasPrefix(name, "//") {
				continue // a URL
			}
			name = strings.TrimLeft(name, "/")
			ok := false
			if strings.Contains(name, "/") {
				ok = exists(filepath.Join(dir, name)) || exists(name)
			} else {
				ok = exists(filepath.Join(dir, name)) || byName[name]
			}
			if !ok {
				t.Errorf("%s:%d names %s, which is not in the repository (the docs are in docs/: docs/README.md lists them)", file, lineOf(text, loc[0]), name)
			}
		}
		if filepath.Ext(file) != ".md" {
			continue
		}
		for _, m := range mdLink.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if !exists(filepath.Join(dir, target)) {
				t.Errorf("%s:%d links to %s, which does not exist", file, lineOf(text, m[0]), target)
			}
		}
	}
}

func lineOf(text string, offset int) int { return strings.Count(text[:offset], "\n") + 1 }
