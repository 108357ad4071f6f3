package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/test/harness"
)

// writeConfig is the tether config of the write-mode tests.
const writeConfig = `{"fs": {"mode": "write"}}`

// treeEntry is what the fidelity checks compare of one file-system entry.
type treeEntry struct {
	mode     fs.FileMode // type and permission bits
	uid, gid uint32
	size     int64
	mtime    int64  // ns since the epoch
	data     string // file content or symlink target; "" for directories
}

func (e treeEntry) String() string {
	return fmt.Sprintf("mode=%v uid=%d gid=%d size=%d mtime=%s data=%q",
		e.mode, e.uid, e.gid, e.size, time.Unix(0, e.mtime).UTC().Format(time.RFC3339Nano), e.data)
}

// readTree maps each entry under root (root itself is ".") to a treeEntry,
// from lstat (symlinks are not followed).
func readTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	m := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := treeEntry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, size: st.Size, mtime: st.Mtim.Nano()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.data, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			e.data = string(b)
		}
		m[rel] = e
		return err
	})
	if err != nil {
		t.Fatalf("reading tree %s: %v", root, err)
	}
	return m
}

// compareTrees fails t for every entry that differs between want (the
// pod's tree) and got (a copy), or exists in only one of them. For each
// entry it compares type and permission bits, owner, size, mtime (to the
// nanosecond) and content or symlink target; a directory's size is not
// compared (it depends on the file system).
func compareTrees(t *testing.T, what string, want, got map[string]treeEntry) {
	t.Helper()
	for _, name := range sortedKeys(want) {
		w := want[name]
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: %s is missing from the copy (pod: %v)", what, name, w)
			continue
		}
		if w.mode.IsDir() {
			g.size, w.size = 0, 0
		}
		if g != w {
			t.Errorf("%s: %s differs:\n  pod:  %v\n  copy: %v", what, name, w, g)
		}
	}
	for _, name := range sortedKeys(got) {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: %s is in the copy but not in the pod: %v", what, name, got[name])
		}
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// metaSnapshot maps each entry under dir to a line with everything a
// metadata change would alter (type and mode, owner, size, mtime, inode
// and link count, content or symlink target), not the atime.
func metaSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for name, e := range readTree(t, dir) {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		m[name] = fmt.Sprintf("%v ino=%d nlink=%d", e, st.Ino, st.Nlink)
	}
	return m
}

// lsMode formats m as ls -l and tar tv do ("drwxr-x---", "lrwxrwxrwx").
func lsMode(m fs.FileMode) string {
	b := []byte("-rwxrwxrwx")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	}
	for i := 0; i < 9; i++ {
		if m.Perm()&(1<<(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	return string(b)
}

// statFields are the fields of one stat result as the fidelity programs
// print them (Python's os.stat_result names without "st_", and the
// probe's fstat subcommand).
type statFields struct {
	Mode    uint32 `json:"mode"`
	Ino     uint64 `json:"ino"`
	Dev     uint64 `json:"dev"`
	Nlink   uint64 `json:"nlink"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Size    int64  `json:"size"`
	Rdev    uint64 `json:"rdev"`
	Blksize int64  `json:"blksize"`
	Blocks  int64  `json:"blocks"`
	AtimeNs int64  `json:"atime_ns"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
}

// fieldsOf converts a host stat result to statFields.
func fieldsOf(st *unix.Stat_t) statFields {
	return statFields{
		Mode: st.Mode, Ino: st.Ino, Dev: st.Dev, Nlink: uint64(st.Nlink),
		UID: st.Uid, GID: st.Gid, Size: st.Size, Rdev: st.Rdev,
		Blksize: int64(st.Blksize), Blocks: st.Blocks,
		AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
	}
}

// hostStat returns the stat (follow) or lstat of the host path p.
func hostStat(t *testing.T, p string, follow bool) statFields {
	t.Helper()
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(p, &st)
	} else {
		err = unix.Lstat(p, &st)
	}
	if err != nil {
		t.Fatal(err)
	}
	return fieldsOf(&st)
}

// parseStats decodes {PATH: {"stat"|"lstat"|"fstat": statFields}}.
func parseStats(t *testing.T, out string) map[string]map[string]statFields {
	t.Helper()
	var m map[string]map[string]statFields
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("decoding the stat results: %v\n%s", err, out)
	}
	return m
}

// diffFields lists the fields where got differs from want ("ino: got 5,
// want 7"), or nothing.
func diffFields(got, want statFields) []string {
	var out []string
	add := func(name string, g, w any) {
		if g != w {
			out = append(out, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	add("mode", fmt.Sprintf("%#o", got.Mode), fmt.Sprintf("%#o", want.Mode))
	add("ino", got.Ino, want.Ino)
	add("dev", got.Dev, want.Dev)
	add("nlink", got.Nlink, want.Nlink)
	add("uid", got.UID, want.UID)
	add("gid", got.GID, want.GID)
	add("size", got.Size, want.Size)
	add("rdev", got.Rdev, want.Rdev)
	add("blksize", got.Blksize, want.Blksize)
	add("blocks", got.Blocks, want.Blocks)
	add("atime_ns", got.AtimeNs, want.AtimeNs)
	add("mtime_ns", got.MtimeNs, want.MtimeNs)
	add("ctime_ns", got.CtimeNs, want.CtimeNs)
	return out
}

// settleAtimes reads every file and lists every directory under the host
// directory dir, so that with relatime a later read (by the agent) no
// longer moves their atimes and stat results stay comparable.
func settleAtimes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		_, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newFifo makes a FIFO in a temporary directory (local for tether: /tmp)
// and opens it read-write, so neither end's open blocks. A tethered
// program reads a line from it to wait for the test; the test writes one
// (go) to let it continue. The FIFO is closed when t ends.
func newFifo(t *testing.T) (path string, w *os.File) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "go.fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return path, w
}

// goOn writes one line to the FIFO w (see newFifo).
func goOn(t *testing.T, w *os.File) {
	t.Helper()
	if _, err := w.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
}

// programStderr is r's standard error without tether's own status lines
// ("tether: ..."): what the program itself complained about.
func programStderr(r harness.Result) string {
	var out []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if l != "" && !strings.HasPrefix(l, "tether: ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// uploadDir makes a fresh directory under the pod's harness.PodUploadsDir
// and returns its path in the pod; it is removed when t ends.
func uploadDir(t *testing.T, f *fixture) string {
	t.Helper()
	d := harness.PodUploadsDir + "/" + strings.ReplaceAll(t.Name(), "/", "_") + "-" + randHex()
	host := f.env.Pod.Path(d)
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	return d
}
