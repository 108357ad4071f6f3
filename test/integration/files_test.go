package integration

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// responseSize is the size of the pod's /app/response.txt.
var responseSize = len(harness.PodResponse)

// TestFilesCoreutils: cat, ls -l and stat see the pod's /app, which does
// not exist locally.
func TestFilesCoreutils(t *testing.T) {
	f := start(t)
	r := f.tether(t, "", "cat", "/app/response.txt")
	if wantOK(t, r); r.Stdout != harness.PodResponse {
		t.Fatalf("want %q\n%s", harness.PodResponse, r)
	}
	r = f.tether(t, "", "ls", "-l", "/app")
	wantOK(t, r)
	var sawDir, sawFile bool
	for _, l := range lines(r.Stdout) {
		sawDir = sawDir || strings.HasPrefix(l, "d") && strings.HasSuffix(l, " config")
		sawFile = sawFile || strings.HasPrefix(l, "-rw-r--r--") && strings.HasSuffix(l, " response.txt")
	}
	if !sawDir || !sawFile {
		t.Fatalf("ls -l /app: want a config directory and a -rw-r--r-- response.txt\n%s", r)
	}
	r = f.tether(t, "", "stat", "-c", "%s %F %a", "/app/response.txt")
	wantStdout(t, r, strings.Join([]string{strconv.Itoa(responseSize), "regular file", "644"}, " "))
	r = f.tether(t, "", "stat", "-c", "%F", "/app/config")
	wantStdout(t, r, "directory")

	wantFail(t, local(t, "cat", "/app/response.txt"), "no such file")
}

// TestFilesGo: os.ReadFile, os.ReadDir and os.Stat in a static Go binary.
func TestFilesGo(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	r := f.tether(t, "", probe, "read", "/app/config/settings.json")
	if wantOK(t, r); r.Stdout != harness.PodSettings {
		t.Fatalf("want %q\n%s", harness.PodSettings, r)
	}
	r = f.tether(t, "", probe, "ls", "/app")
	wantOK(t, r)
	if got := lines(r.Stdout); !slices.Equal(got, harness.PodAppEntries) {
		t.Fatalf("ls /app = %q, want %q\n%s", got, harness.PodAppEntries, r)
	}
	wantStdout(t, f.tether(t, "", probe, "stat", "/app/response.txt"), "size="+strconv.Itoa(responseSize)+" mode=-rw-r--r-- dir=false")
	wantStdout(t, f.tether(t, "", probe, "stat", "/app/config"), "dir=true")
	wantFail(t, f.tether(t, "", probe, "read", "/app/missing.txt"), "no such file")

	wantFail(t, local(t, probe, "read", "/app/config/settings.json"), "no such file")
	wantFail(t, local(t, probe, "ls", "/app"), "no such file")
}

// TestFilesPython: open() and os.stat in CPython.
func TestFilesPython(t *testing.T) {
	f := start(t)
	r := f.tether(t, "", python3, "-c", `import os; print(open("/app/response.txt").read(), end=""); print(os.stat("/app/response.txt").st_size)`)
	wantStdout(t, r, harness.PodResponse+strconv.Itoa(responseSize)+"\n")
}

// TestFilesNode: fs.readFileSync and fs.readdirSync in node.
func TestFilesNode(t *testing.T) {
	f := start(t)
	node := harness.NeedTool(t, "node")
	r := f.tether(t, "", node, "-e", `const fs = require('fs'); process.stdout.write(fs.readFileSync('/app/response.txt', 'utf8')); console.log(fs.readdirSync('/app').sort().join(','))`)
	wantStdout(t, r, harness.PodResponse+strings.Join(harness.PodAppEntries, ",")+"\n")
}

// TestFilesModeLocal: fs.mode local turns remote files off.
func TestFilesModeLocal(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const cfg = `{"fs": {"mode": "local"}}`
	wantFail(t, f.tether(t, cfg, probe, "read", "/app/response.txt"), "no such file")
	wantFail(t, f.tether(t, cfg, "cat", "/app/response.txt"), "no such file")
}

// TestFilesNotFound: a path matching fs.not_found is ENOENT, others work.
func TestFilesNotFound(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	const cfg = `{"fs": {"not_found": ["^/app/config/settings\\.json$"]}}`
	wantFail(t, f.tether(t, cfg, probe, "read", "/app/config/settings.json"), "no such file")
	wantFail(t, f.tether(t, cfg, probe, "stat", "/app/config/settings.json"), "no such file")
	r := f.tether(t, cfg, probe, "read", "/app/response.txt")
	if wantOK(t, r); r.Stdout != harness.PodResponse {
		t.Fatalf("want %q\n%s", harness.PodResponse, r)
	}
}

// TestFilesWriteMode: in fs.mode write, a new file lands in the pod.
func TestFilesWriteMode(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	name := "/app/new-" + randHex() + ".txt"
	host := f.env.Pod.Path(name)
	t.Cleanup(func() { os.Remove(host) })
	const text = "written through tether"
	wantOK(t, f.tether(t, `{"fs": {"mode": "write"}}`, probe, "write", name, text))
	b, err := os.ReadFile(host)
	if err != nil {
		t.Fatalf("the written file is not in the pod's rootfs: %v", err)
	}
	if string(b) != text {
		t.Fatalf("pod file %s = %q, want %q", name, b, text)
	}
	// And it reads back through tether in the default mode.
	r := f.tether(t, "", probe, "read", name)
	if wantOK(t, r); r.Stdout != text {
		t.Fatalf("read back %q\n%s", text, r)
	}
}

// TestFilesReadModeRejectsWrites: in the default (read) mode, writes to
// remote paths fail and the pod's files stay as they were.
func TestFilesReadModeRejectsWrites(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	pod := f.env.Pod
	before := snapshot(t, pod.Path("/app"))
	name := "/app/blocked-" + randHex() + ".txt"
	t.Cleanup(func() { os.Remove(pod.Path(name)) })

	wantFail(t, f.tether(t, "", probe, "write", name, "must not land"))
	wantFail(t, f.tether(t, "", probe, "write", "/app/response.txt", "overwritten"))
	wantFail(t, f.tether(t, "", "sh", "-c", "echo overwritten > /app/response.txt"))

	if after := snapshot(t, pod.Path("/app")); !maps.Equal(before, after) {
		t.Fatalf("pod's /app changed in read mode:\nbefore %q\nafter  %q", before, after)
	}
	// Nothing was created locally either.
	if _, err := os.Stat(name); err == nil {
		os.Remove(name)
		t.Fatalf("%s was created locally", name)
	}
}

// snapshot maps each file under dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			m[p] = "<dir>"
			return nil
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randHex() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
