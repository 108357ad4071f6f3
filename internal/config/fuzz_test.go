package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// addSeeds adds the testdata files with extension ext to the corpus.
func addSeeds(f *testing.F, ext string, extra ...string) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "*"+ext))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

// fuzzFiles numbers the temp files the fuzz targets write.
var fuzzFiles atomic.Int64

// fuzzPath returns a new file name in dir (the fuzz target's TempDir, made
// once per process: a TempDir per input would slow fuzzing down).
func fuzzPath(dir, ext string) string {
	return filepath.Join(dir, "f"+strconv.FormatInt(fuzzFiles.Add(1), 10)+ext)
}

// fuzzLoad writes data to a temp file with extension ext in dir and loads
// it. It must not panic, errors must name the file, and a config that loads
// must validate and survive a trip through JSON unchanged.
func fuzzLoad(t *testing.T, dir, ext string, data []byte) {
	path := fuzzPath(dir, ext)
	defer os.Remove(path)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := Load(path)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Load took %v", d)
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error is a %T, not an *Error: %v", err, err)
		}
		if !strings.HasPrefix(err.Error(), path) {
			t.Fatalf("error does not start with the file name: %v", err)
		}
		return
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Load succeeded but Validate fails: %v", err)
	}
	j1, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	c2, err := Parse("again.json", j1)
	if err != nil {
		t.Fatalf("the config marshaled to JSON does not load: %v\n%s", err, j1)
	}
	j2, err := json.Marshal(c2)
	if err != nil || !bytes.Equal(j1, j2) {
		t.Fatalf("JSON round trip changed the config:\n%s\n%s", j1, j2)
	}
}

func FuzzLoadJSON(f *testing.F) {
	addSeeds(f, ".json", `{"incoming": {"port_mapping": [[1, 2]]}}`, `{"env": {"override": {"A.B": "x"}}}`, `{"agent": {"linger": 1e3}}`)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, dir, ".json", data) })
}

func FuzzLoadYAML(f *testing.F) {
	addSeeds(f, ".yaml", "a: &x {mode: read}\nfs: *x\n", "fs:\n  <<: [{mode: read}]\n", "env:\n  override: {1: x}\n", "--- \n...\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, dir, ".yaml", data) })
}

func FuzzLoadTOML(f *testing.F) {
	addSeeds(f, ".toml", "[[incoming.http_filter.any_of]]\npath='a'\n", "incoming.http_filter.all_of = [{path = 'a'}]\n", "\"fs\".'mode' = 'read'\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, dir, ".toml", data) })
}

func FuzzEnvFile(f *testing.F) {
	addSeeds(f, ".env", "A=1\nexport B='2'\nC=\"x\\ny\"\n", "A=\"unterminated\n", "# c\n\n=x\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := fuzzPath(dir, ".env")
		defer os.Remove(path)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		env, err := LoadEnvFile(path)
		if err != nil {
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Fatalf("error does not name the file and line: %v", err)
			}
			return
		}
		for k, v := range env {
			if k == "" || strings.ContainsAny(k, "= \t\n\x00") || strings.Contains(v, "\x00") {
				t.Fatalf("bad variable %q=%q", k, v)
			}
		}
	})
}
