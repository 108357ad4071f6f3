package integration

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// The write-mode fidelity tests (writeConfig): metadata changes, links and
// directories land in the pod, close returns only once the pod has the
// data, and the pod's own refusals (a read-only mount, a full file system)
// reach the program as errors.

// TestFidelityWriteMetadata: mkdir -p, mkdir -m, ln -s, ln, chmod, chown,
// touch -d, truncate, rm, mv and rmdir on remote paths change the pod.
func TestFidelityWriteMetadata(t *testing.T) {
	f := start(t)
	pod := f.env.Pod
	umask := processUmask(t)
	const content = "hello world\n"
	touchTime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name  string
		argv  func(d string) []string      // d: the test's directory in the pod
		check func(t *testing.T, d string) // d: the same directory on the host
	}{
		{"mkdir-p", func(d string) []string { return []string{"mkdir", "-p", d + "/new/a/b"} },
			func(t *testing.T, d string) {
				for _, p := range []string{"/new", "/new/a", "/new/a/b"} {
					wantMode(t, d+p, os.ModeDir|0o777&^umask)
				}
			}},
		{"mkdir-m", func(d string) []string { return []string{"mkdir", "-m", "0700", d + "/private"} },
			func(t *testing.T, d string) { wantMode(t, d+"/private", os.ModeDir|0o700) }},
		{"ln-s", func(d string) []string { return []string{"ln", "-s", "target", d + "/link"} },
			func(t *testing.T, d string) {
				if got, err := os.Readlink(d + "/link"); err != nil || got != "target" {
					t.Errorf("pod's link: readlink = %q, %v; want target", got, err)
				}
			}},
		{"ln", func(d string) []string { return []string{"ln", d + "/f", d + "/hard"} },
			func(t *testing.T, d string) {
				a, b := lstatT(t, d+"/f"), lstatT(t, d+"/hard")
				if a.Ino != b.Ino || a.Nlink != 2 {
					t.Errorf("pod's hard link: f ino=%d nlink=%d, hard ino=%d; want the same inode, 2 links", a.Ino, a.Nlink, b.Ino)
				}
			}},
		{"chmod", func(d string) []string { return []string{"chmod", "0640", d + "/f"} },
			func(t *testing.T, d string) { wantMode(t, d+"/f", 0o640) }},
		{"chown", func(d string) []string { return []string{"chown", "1234:2345", d + "/f"} },
			func(t *testing.T, d string) {
				if st := lstatT(t, d+"/f"); st.Uid != 1234 || st.Gid != 2345 {
					t.Errorf("pod's f: owner %d:%d, want 1234:2345", st.Uid, st.Gid)
				}
			}},
		{"touch-d", func(d string) []string { return []string{"touch", "-d", "2020-01-02 03:04:05 UTC", d + "/f"} },
			func(t *testing.T, d string) {
				st := lstatT(t, d+"/f")
				if st.Mtim.Nano() != touchTime.UnixNano() || st.Atim.Nano() != touchTime.UnixNano() {
					t.Errorf("pod's f: mtime %v atime %v, want both %v", time.Unix(0, st.Mtim.Nano()).UTC(), time.Unix(0, st.Atim.Nano()).UTC(), touchTime)
				}
			}},
		{"truncate", func(d string) []string { return []string{"truncate", "-s", "3", d + "/f"} },
			func(t *testing.T, d string) { wantContent(t, d+"/f", content[:3]) }},
		{"rm", func(d string) []string { return []string{"rm", d + "/f"} },
			func(t *testing.T, d string) { wantMissing(t, d+"/f") }},
		{"mv", func(d string) []string { return []string{"mv", d + "/f", d + "/g"} },
			func(t *testing.T, d string) { wantMissing(t, d+"/f"); wantContent(t, d+"/g", content) }},
		{"rmdir", func(d string) []string { return []string{"rmdir", d + "/empty"} },
			func(t *testing.T, d string) { wantMissing(t, d+"/empty") }},
	}
	// prepare gives the host directory d a file f and an empty directory.
	prepare := func(t *testing.T, d string) {
		t.Helper()
		if err := os.WriteFile(d+"/f", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(d+"/empty", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Control: the command and the check on a local directory.
			ctl := t.TempDir()
			prepare(t, ctl)
			wantOK(t, local(t, c.argv(ctl)...))
			if c.check(t, ctl); t.Failed() {
				t.Fatal("the control (no tether, local directory) failed: the check is wrong")
			}
			d := uploadDir(t, f)
			prepare(t, pod.Path(d))
			wantOK(t, f.tether(t, writeConfig, c.argv(d)...))
			c.check(t, pod.Path(d))
		})
	}
}

// atomicSaveScript saves argv[1]/target.txt 200 times the atomic way
// (write a temporary file in the same directory, flush, fsync, close,
// rename over the target), reads the target back each time, and every
// 20th time prints "renamed N" and waits for a line on the FIFO argv[2].
const atomicSaveScript = `
import os, sys
d, fifo = sys.argv[1], sys.argv[2]
target = os.path.join(d, 'target.txt')
ctl = open(fifo)
for i in range(200):
    content = ('iteration %d\n' % i) * (1 + i % 7)
    tmp = os.path.join(d, '.target.txt.tmp%d' % i)
    with open(tmp, 'w') as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, target)
    with open(target) as f:
        got = f.read()
    if got != content:
        print('MISMATCH at %d: %r' % (i, got), flush=True)
        sys.exit(1)
    if i % 20 == 19:
        print('renamed %d' % i, flush=True)
        ctl.readline()
print('done', flush=True)
`

// atomicContent is what atomicSaveScript writes in iteration i.
func atomicContent(i int) string { return strings.Repeat(fmt.Sprintf("iteration %d\n", i), 1+i%7) }

// TestFidelityAtomicSave: the editor's atomic save, 200 times in one
// process: every read-back sees the new content, and at each checkpoint
// the pod already has it, with no temporary file left.
func TestFidelityAtomicSave(t *testing.T) {
	f := start(t)
	d := uploadDir(t, f)
	host := f.env.Pod.Path(d)
	fifo, w := newFifo(t)
	p := harness.StartExec(t, f.agent.Addr, harness.ExecOpts{Config: writeConfig, Timeout: 3 * time.Minute},
		python3, "-c", atomicSaveScript, d, fifo)
	checkPod := func(i int) {
		t.Helper()
		wantContent(t, host+"/target.txt", atomicContent(i))
		if names := dirNames(t, host); !slices.Equal(names, []string{"target.txt"}) {
			t.Errorf("after iteration %d the pod's directory has %q, want only target.txt", i, names)
		}
	}
	for i := 19; i < 200; i += 20 {
		if !p.WaitStdout(fmt.Sprintf("renamed %d\n", i), 2*time.Minute) {
			res, _ := p.Wait(5 * time.Second)
			t.Fatalf("no checkpoint %d\n%s", i, res)
		}
		checkPod(i)
		goOn(t, w)
	}
	res, ok := p.Wait(time.Minute)
	if !ok || !res.OK() || !strings.Contains(res.Stdout, "done\n") {
		t.Fatalf("atomic save loop did not finish cleanly\n%s", res)
	}
	checkPod(199)
}

// closeScript writes argv[3] lines to argv[1], closes it, prints "closed",
// and waits for a line on the FIFO argv[2].
const closeScript = `
import sys
p, fifo, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(p, 'w') as f:
    f.write(''.join('%07d\n' % i for i in range(n)))
print('closed', flush=True)
open(fifo).readline()
print('bye', flush=True)
`

// TestFidelityCloseUploads: when close returns, the pod already has the
// whole file: the program prints a line right after close and blocks, and
// the test reads the pod's file before letting it go on.
func TestFidelityCloseUploads(t *testing.T) {
	f := start(t)
	const n = 1 << 17 // 1 MiB of 8-byte lines
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%07d\n", i)
	}
	want := b.String()
	src := t.TempDir() + "/src.txt" // local
	if err := os.WriteFile(src, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		argv func(dst, fifo string) []string
	}{
		{"python", func(dst, fifo string) []string {
			return []string{python3, "-c", closeScript, dst, fifo, strconv.Itoa(n)}
		}},
		// GNU cat closes its stdout (and checks the result) before exiting.
		{"shell-redirect", func(dst, fifo string) []string {
			return []string{"sh", "-c", `cat "$1" > "$2" && echo closed && read x < "$3" && echo bye`, "sh", src, dst, fifo}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := uploadDir(t, f) + "/out.txt"
			fifo, w := newFifo(t)
			p := harness.StartExec(t, f.agent.Addr, harness.ExecOpts{Config: writeConfig}, c.argv(dst, fifo)...)
			if !p.WaitStdout("closed\n", time.Minute) {
				res, _ := p.Wait(5 * time.Second)
				t.Fatalf("the program did not report its close\n%s", res)
			}
			got, err := os.ReadFile(f.env.Pod.Path(dst))
			if err != nil || string(got) != want {
				t.Errorf("right after close returned the pod's file has %d bytes (%v), want %d", len(got), err, len(want))
			}
			goOn(t, w)
			if res, ok := p.Wait(time.Minute); !ok || !res.OK() || !strings.Contains(res.Stdout, "bye") {
				t.Errorf("the program did not finish cleanly\n%s", res)
			}
		})
	}
}

// refusedScript writes argv[2] to argv[1] (open, write, close) and prints
// the step that raised and its errno ("close errno 28"), or "no error".
const refusedScript = `
import sys
step = 'open'
try:
    f = open(sys.argv[1], 'w')
    step = 'write'
    f.write(sys.argv[2])
    step = 'close'
    f.close()
except OSError as e:
    print('%s errno %d' % (step, e.errno))
    sys.exit(0)
print('no error')
sys.exit(3)
`

// TestFidelityUploadRefused: a write the pod refuses fails in the program
// with the pod's errno: a read-only mount (EROFS, 30) and a full tmpfs
// (ENOSPC, 28, which can only show at write or close: the data reaches
// the pod after open), and nothing lands on the read-only mount.
func TestFidelityUploadRefused(t *testing.T) {
	f := start(t)
	pod := f.env.Pod
	inPod := func(p string) string { return fmt.Sprintf("/proc/%d/root%s", pod.PID, p) }
	t.Cleanup(func() { os.Remove(inPod(harness.PodFullDir + "/big")) })

	// Controls: the pod itself refuses these writes.
	if err := os.WriteFile(inPod(harness.PodReadOnlyDir+"/control"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("control: writing %s in the pod: %v, want EROFS", harness.PodReadOnlyDir, err)
	}
	big := strings.Repeat("x", 4*harness.PodFullSize)
	err := os.WriteFile(inPod(harness.PodFullDir+"/control"), []byte(big), 0o644)
	os.Remove(inPod(harness.PodFullDir + "/control"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("control: writing %d bytes to %s in the pod: %v, want ENOSPC", len(big), harness.PodFullDir, err)
	}

	t.Run("read-only-mount", func(t *testing.T) {
		r := f.tether(t, writeConfig, python3, "-c", refusedScript, harness.PodReadOnlyDir+"/x", "x")
		wantOK(t, r)
		if l := lines(r.Stdout); len(l) != 1 || !strings.HasSuffix(l[0], " errno 30") {
			t.Errorf("want EROFS (errno 30) at open, write or close\n%s", r)
		}
	})
	t.Run("read-only-mount-shell", func(t *testing.T) {
		// The shell ignores close errors: a refused create must fail at open.
		wantFail(t, f.tether(t, writeConfig, "sh", "-c", "echo x > "+harness.PodReadOnlyDir+"/y"), "Read-only file system")
	})
	t.Run("full", func(t *testing.T) {
		r := f.tether(t, writeConfig, python3, "-c", refusedScript, harness.PodFullDir+"/big", big)
		wantOK(t, r)
		if l := lines(r.Stdout); len(l) != 1 || !(l[0] == "write errno 28" || l[0] == "close errno 28") {
			t.Errorf("want ENOSPC (errno 28) at write or close\n%s", r)
		}
	})
	if names := dirNames(t, pod.Path(harness.PodReadOnlyDir)); len(names) != 0 {
		t.Errorf("the pod's read-only directory has %q, want nothing", names)
	}
	if names := dirNames(t, inPod(harness.PodReadOnlyDir)); len(names) != 0 {
		t.Errorf("the pod's read-only mount has %q, want nothing", names)
	}
}

// processUmask returns this process's umask (from /proc/self/status), which
// the tethered commands inherit.
func processUmask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			return os.FileMode(m)
		}
	}
	t.Fatal("no Umask in /proc/self/status")
	return 0
}

// lstatT returns the lstat of the host path p, failing t if it fails.
func lstatT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("the pod's %s: %v", path.Base(p), err)
	}
	return &st
}

// wantMode fails t unless the host path p has type and permission bits m.
func wantMode(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("the pod's %s: %v", p, err)
	}
	if got := fi.Mode() & (os.ModeType | os.ModePerm); got != m {
		t.Errorf("the pod's %s has mode %v, want %v", p, got, m)
	}
}

// wantContent fails t unless the host file p holds content.
func wantContent(t *testing.T, p, content string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != content {
		t.Errorf("the pod's %s = %q (%v), want %q", path.Base(p), b, err, content)
	}
}

// wantMissing fails t if the host path p exists.
func wantMissing(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pod's %s still exists (%v)", path.Base(p), err)
	}
}

// dirNames lists the names in the host directory dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
