package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/harness"
)

// The fidelity tests (read mode, the default): tools that check what they
// copy or read (cp, tar, rsync, git) and programs that compare stat with
// fstat, chdir into remote directories or readlink /proc/self/fd must see
// the pod's files exactly as they are in the pod (harness.PodDataDir and
// friends). Every check compares with the pod's rootfs on the host.

// TestFidelityCopy: cp, cp -a, rsync -a and tar copy the pod's files
// faithfully: content, type and permission bits, owner, nanosecond mtimes
// and symlinks.
func TestFidelityCopy(t *testing.T) {
	f := start(t)
	pod := f.env.Pod

	t.Run("cp-file", func(t *testing.T) {
		for _, p := range []string{"/app/response.txt", "/app/data/notes.txt"} {
			dst := filepath.Join(t.TempDir(), "copy")
			wantOK(t, f.tether(t, "", "cp", p, dst))
			want, _ := os.ReadFile(pod.Path(p))
			if got, err := os.ReadFile(dst); err != nil || string(got) != string(want) {
				t.Errorf("cp %s: copy = %q, %v; want %q", p, got, err, want)
			}
		}
		wantFail(t, local(t, "cp", "/app/response.txt", t.TempDir()), "no such file")
	})

	// Each copy puts the tree of src (a directory named data) at dst/data.
	copies := []struct {
		name, tool string
		argv       func(src, dst string) []string
	}{
		{"cp-a", "cp", func(src, dst string) []string { return []string{"cp", "-a", src, dst + "/"} }},
		{"rsync-a", "rsync", func(src, dst string) []string {
			return []string{"rsync", "-a", src + "/", dst + "/data/"}
		}},
		{"tar-posix", "tar", func(src, dst string) []string {
			return []string{"bash", "-c", `set -o pipefail; tar --format=posix -cf - -C "$1" data | tar -xpf - -C "$2"`,
				"tar-copy", path.Dir(src), dst}
		}},
	}
	for _, c := range copies {
		t.Run(c.name, func(t *testing.T) {
			harness.NeedTool(t, c.tool)
			want := readTree(t, pod.Path(harness.PodDataDir))
			// Control: the same command on the pod's files, without tether.
			ctl := t.TempDir()
			wantOK(t, local(t, c.argv(pod.Path(harness.PodDataDir), ctl)...))
			compareTrees(t, "control (no tether)", want, readTree(t, filepath.Join(ctl, "data")))

			dst := t.TempDir()
			r := f.tether(t, "", c.argv(harness.PodDataDir, dst)...)
			wantOK(t, r)
			if e := programStderr(r); e != "" {
				t.Errorf("%s complained on stderr: %q\n%s", c.name, e, r)
			}
			compareTrees(t, c.name+" under tether", want, readTree(t, filepath.Join(dst, "data")))
		})
	}

	t.Run("tar-list", func(t *testing.T) {
		var want []string
		for rel, e := range readTree(t, pod.Path(harness.PodDataDir)) {
			name, size := path.Join("data", rel), e.size
			if e.mode.IsDir() {
				name, size = name+"/", 0
			}
			if e.mode&os.ModeSymlink != 0 {
				name, size = name+" -> "+e.data, 0
			}
			want = append(want, fmt.Sprintf("%s %d/%d %d %s %s", lsMode(e.mode), e.uid, e.gid, size,
				time.Unix(0, e.mtime).UTC().Format(time.DateTime), name))
		}
		slices.Sort(want)
		r := f.tether(t, "", "bash", "-c", "set -o pipefail; tar cf - -C /app data | tar --utc --full-time --numeric-owner -tvf -")
		wantOK(t, r)
		if e := programStderr(r); e != "" {
			t.Errorf("tar complained on stderr (e.g. \"file changed as we read it\"): %q\n%s", e, r)
		}
		var got []string
		for _, l := range lines(r.Stdout) {
			got = append(got, strings.Join(strings.Fields(l), " "))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("tar tv of tar c /app/data:\n got  %q\n want %q", got, want)
		}
	})
}

// statScript prints {PATH: {"stat", "lstat", "fstat"}} (os.stat,
// os.lstat, os.fstat of an O_RDONLY descriptor) for each argument, with
// the probe's field names.
const statScript = `
import json, os, sys
F = ('mode', 'ino', 'dev', 'nlink', 'uid', 'gid', 'size', 'rdev', 'blksize', 'blocks', 'atime_ns', 'mtime_ns', 'ctime_ns')
def d(s):
    return {k: getattr(s, 'st_' + k) for k in F}
out = {}
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    out[p] = {'stat': d(os.stat(p)), 'lstat': d(os.lstat(p)), 'fstat': d(os.fstat(fd))}
    os.close(fd)
print(json.dumps(out))
`

// TestFidelityStat: for remote files, a symlink and directories, fstat of
// an open descriptor equals stat of the path, and both equal the pod's
// file in every field (mode, inode, device, links, owner, size, blocks,
// nanosecond times), in CPython (glibc) and in a static Go binary.
func TestFidelityStat(t *testing.T) {
	f := start(t)
	pod := f.env.Pod
	paths := []string{"/app/response.txt", "/app/data/notes.txt", "/app/data/run.sh", "/app/data/link", "/app/data/sub", "/app/data", "/app"}
	programs := []struct {
		name string
		argv []string
	}{
		{"python", []string{python3, "-c", statScript}},
		{"go-static", []string{harness.Probe(t), "fstat"}},
	}
	for _, prog := range programs {
		t.Run(prog.name, func(t *testing.T) {
			settleAtimes(t, pod.Path("/app"))
			check := func(what, out string, podPath func(string) string, names []string) {
				t.Helper()
				got := parseStats(t, out)
				for _, p := range names {
					wants := map[string]statFields{
						"stat":  hostStat(t, pod.Path(p), true),
						"fstat": hostStat(t, pod.Path(p), true),
						"lstat": hostStat(t, pod.Path(p), false),
					}
					for _, kind := range sortedKeys(wants) {
						g, ok := got[podPath(p)][kind]
						if !ok {
							t.Errorf("%s: no %s result for %s\n%s", what, kind, p, out)
							continue
						}
						if d := diffFields(g, wants[kind]); len(d) > 0 {
							t.Errorf("%s: %s(%s) differs from the pod's file:\n  %s", what, kind, p, strings.Join(d, "\n  "))
						}
					}
				}
			}
			// Control: the program itself on the host paths, without tether.
			var hostPaths []string
			for _, p := range paths {
				hostPaths = append(hostPaths, pod.Path(p))
			}
			r := local(t, append(prog.argv, hostPaths...)...)
			wantOK(t, r)
			check("control (no tether)", r.Stdout, pod.Path, paths)

			r = f.tether(t, "", append(prog.argv, paths...)...)
			wantOK(t, r)
			check("under tether", r.Stdout, func(p string) string { return p }, paths)
		})
	}
}

// TestFidelityGit: git works in the pod's repository: a clean status
// (git compares the index's stat data and content with the work tree),
// the log, the file list.
func TestFidelityGit(t *testing.T) {
	f := start(t)
	repo := f.env.Pod.Path(harness.PodRepoDir)
	git := harness.NeedTool(t, "git")
	// Control: the host's view of the same repository.
	r := local(t, git, "-C", repo, "status", "--porcelain")
	if wantOK(t, r); r.Stdout != "" {
		t.Fatalf("control: the fixture repository is not clean on the host\n%s", r)
	}
	ctlLog := local(t, git, "-C", repo, "log", "--oneline")
	wantStdout(t, ctlLog, harness.PodRepoSubject)

	r = f.tether(t, "", git, "-C", harness.PodRepoDir, "status", "--porcelain")
	if wantOK(t, r); r.Stdout != "" {
		t.Errorf("git status --porcelain: want a clean tree (no output)\n%s", r)
	}
	r = f.tether(t, "", git, "-C", harness.PodRepoDir, "log", "--oneline")
	if wantOK(t, r); r.Stdout != ctlLog.Stdout {
		t.Errorf("git log --oneline = %q, want %q (the host's)\n%s", r.Stdout, ctlLog.Stdout, r)
	}
	r = f.tether(t, "", git, "-C", harness.PodRepoDir, "ls-files")
	if wantOK(t, r); r.Stdout != "README.md\nsrc/main.txt\n" {
		t.Errorf("git ls-files = %q\n%s", r.Stdout, r)
	}
	wantOK(t, f.tether(t, "", git, "-C", harness.PodRepoDir, "diff", "--exit-code"))

	wantFail(t, local(t, git, "-C", harness.PodRepoDir, "status"), "cannot change to")
}

// chdirScript walks remote directories with chdir, relative opens,
// listdir, chdir(".."), fchdir and failing chdirs, and prints what it saw
// as JSON.
const chdirScript = `
import json, os
r = {}
os.chdir('/app/data'); r['cwd_data'] = os.getcwd()
r['notes'] = open('notes.txt').read()
r['list'] = sorted(os.listdir('.'))
r['inner'] = open('sub/inner.txt').read()
os.chdir('..'); r['cwd_up'] = os.getcwd()
os.chdir('data/sub'); r['cwd_sub'] = os.getcwd()
r['inner_rel'] = open('inner.txt').read()
fd = os.open('/app/config', os.O_RDONLY | os.O_DIRECTORY)
os.fchdir(fd); os.close(fd)
r['cwd_fchdir'] = os.getcwd()
r['settings'] = open('settings.json').read()
for k, p in (('err_missing', '/app/missing'), ('err_notdir', '/app/response.txt')):
    try:
        os.chdir(p); r[k] = 0
    except OSError as e:
        r[k] = e.errno
r['cwd_after_errors'] = os.getcwd()
print(json.dumps(r))
`

// TestFidelityChdir: cd into remote directories works, getcwd reports the
// remote path (in the process and in its children), and relative paths
// resolve in the pod.
func TestFidelityChdir(t *testing.T) {
	f := start(t)
	pod := f.env.Pod
	read := func(p string) string {
		b, err := os.ReadFile(pod.Path(p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("sh-cd", func(t *testing.T) {
		r := f.tether(t, "", "sh", "-c", "cd /app && pwd && cat response.txt")
		if want := "/app\n" + harness.PodResponse; !r.OK() || r.Stdout != want {
			t.Errorf("want stdout %q\n%s", want, r)
		}
	})
	t.Run("child-getcwd", func(t *testing.T) {
		// /bin/pwd -P calls getcwd in a child that inherited the cwd.
		r := f.tether(t, "", "sh", "-c", "cd /app/data/sub && /bin/pwd -P && cat inner.txt && ls")
		if want := "/app/data/sub\n" + read("/app/data/sub/inner.txt") + "inner.txt\n"; !r.OK() || r.Stdout != want {
			t.Errorf("want stdout %q\n%s", want, r)
		}
	})
	t.Run("python", func(t *testing.T) {
		r := f.tether(t, "", python3, "-c", chdirScript)
		wantOK(t, r)
		var got map[string]any
		if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r)
		}
		ents, err := os.ReadDir(pod.Path(harness.PodDataDir))
		if err != nil {
			t.Fatal(err)
		}
		var list []any
		for _, e := range ents {
			list = append(list, e.Name())
		}
		want := map[string]any{
			"cwd_data": "/app/data", "notes": read("/app/data/notes.txt"), "list": list,
			"inner": read("/app/data/sub/inner.txt"), "cwd_up": "/app", "cwd_sub": "/app/data/sub",
			"inner_rel": read("/app/data/sub/inner.txt"), "cwd_fchdir": "/app/config", "settings": harness.PodSettings,
			"err_missing": 2.0, "err_notdir": 20.0, "cwd_after_errors": "/app/config",
		}
		for _, k := range sortedKeys(want) {
			if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
				t.Errorf("%s = %#v, want %#v", k, got[k], want[k])
			}
		}
	})
	wantFail(t, local(t, python3, "-c", "import os; os.chdir('/app')"), "no such file")
}

// readlinkScript opens remote files and directories (absolute, and
// relative to a directory descriptor) and a local file (argv[1]), and
// prints the readlink of their /proc/self/fd entries as JSON.
const readlinkScript = `
import json, os, sys
r = {}
fd = os.open('/app/response.txt', os.O_RDONLY)
r['file'] = os.readlink('/proc/self/fd/%d' % fd)
r['file_pid'] = os.readlink('/proc/%d/fd/%d' % (os.getpid(), fd))
dfd = os.open('/app/data', os.O_RDONLY | os.O_DIRECTORY)
r['dir'] = os.readlink('/proc/self/fd/%d' % dfd)
nfd = os.open('notes.txt', os.O_RDONLY, dir_fd=dfd)
r['at'] = os.readlink('/proc/self/fd/%d' % nfd)
lfd = os.open(sys.argv[1], os.O_RDONLY)
r['local'] = os.readlink('/proc/self/fd/%d' % lfd)
print(json.dumps(r))
`

// TestFidelityProcFdReadlink: readlink of /proc/self/fd/N names the
// remote path an fd was opened on (not tether's memfd or shadow dir),
// also in a child that inherited the fd; local files are unaffected.
func TestFidelityProcFdReadlink(t *testing.T) {
	f := start(t)
	localFile := filepath.Join(t.TempDir(), "local.txt")
	if err := os.WriteFile(localFile, []byte("local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.tether(t, "", python3, "-c", readlinkScript, localFile)
	wantOK(t, r)
	var got map[string]string
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	want := map[string]string{
		"file": "/app/response.txt", "file_pid": "/app/response.txt", "dir": "/app/data",
		"at": "/app/data/notes.txt", "local": localFile,
	}
	if !maps.Equal(got, want) {
		t.Errorf("readlink /proc/self/fd/N:\n got  %v\n want %v", got, want)
	}
	r = f.tether(t, "", "sh", "-c", "exec 3< /app/response.txt; readlink /proc/self/fd/3")
	if !r.OK() || r.Stdout != "/app/response.txt\n" {
		t.Errorf("readlink in a child: want %q\n%s", "/app/response.txt\n", r)
	}
}
