package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Fixture paths in the pod (see buildPodFiles and mountPodFixtures).
const (
	// PodDataDir is a small tree with distinct modes, owners and fixed
	// times (podDataFiles), for cp -a / tar / rsync fidelity checks.
	PodDataDir = "/app/data"
	// PodRepoDir is a git repository with one commit and a clean work tree.
	PodRepoDir = "/app/repo"
	// PodRepoSubject is the subject of PodRepoDir's only commit.
	PodRepoSubject = "fixture: initial commit"
	// PodReadOnlyDir is a read-only bind mount in the pod's mount namespace:
	// writes there fail in the pod with EROFS (the host directory under
	// RootFS stays writable, and empty).
	PodReadOnlyDir = "/app/ro"
	// PodFullDir is a 16 KiB tmpfs in the pod's mount namespace: writing
	// more than that fails in the pod with ENOSPC. Its content is only
	// visible in the pod (Pod.Run), not under RootFS.
	PodFullDir = "/app/full"
	// PodFullSize is the size limit of PodFullDir in bytes.
	PodFullSize = 16 << 10
	// PodUploadsDir is an empty writable directory (0777) for write-mode
	// tests; each test makes its own subdirectory.
	PodUploadsDir = "/app/uploads"
	// PodDataUID and PodDataGID own PodDataDir/notes.txt.
	PodDataUID = 1234
	PodDataGID = 2345
)

// PodAppEntries are the names in the pod's /app, sorted.
var PodAppEntries = []string{"config", "data", "full", "repo", "response.txt", "ro", "uploads"}

// PodDataTime is the base of the fixed times of PodDataDir: entry i of
// podDataFiles has mtime PodDataTime + i minutes (notes.txt also has a
// sub-second part) and atime one day earlier.
var PodDataTime = time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)

// podEntry is one fixture entry under PodDataDir.
type podEntry struct {
	name    string // relative to PodDataDir; "" is PodDataDir itself
	mode    os.FileMode
	content string // file content, or the target of a symlink
	nsec    int    // added to the mtime
}

// podDataFiles lists the entries of PodDataDir in creation order (the
// directories' times are set after their content).
var podDataFiles = []podEntry{
	{name: "notes.txt", mode: 0o640, content: "notes from the pod\n", nsec: 123456789},
	{name: "run.sh", mode: 0o755, content: "#!/bin/sh\necho run from the pod\n"},
	{name: "secret.key", mode: 0o600, content: "not really a secret\n"},
	{name: "sub", mode: os.ModeDir | 0o750},
	{name: "sub/inner.txt", mode: 0o644, content: "inner file of the pod\n"},
	{name: "link", mode: os.ModeSymlink | 0o777, content: "sub/inner.txt"},
	{name: "", mode: os.ModeDir | 0o755},
}

// buildPodFiles adds the fixtures of PodDataDir, PodRepoDir and the empty
// directories PodReadOnlyDir, PodFullDir, PodUploadsDir to the rootfs at
// root. The caller sets /app's own times afterwards.
func buildPodFiles(root string) error {
	data := filepath.Join(root, PodDataDir)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	for _, e := range podDataFiles {
		p := filepath.Join(data, e.name)
		var err error
		switch {
		case e.mode.IsDir():
			err = os.MkdirAll(p, 0o700)
		case e.mode&os.ModeSymlink != 0:
			err = os.Symlink(e.content, p)
		default:
			err = os.WriteFile(p, []byte(e.content), 0o600)
		}
		if err == nil && e.mode&os.ModeSymlink == 0 {
			err = os.Chmod(p, e.mode) // not subject to the umask
		}
		if err != nil {
			return err
		}
	}
	if err := os.Lchown(filepath.Join(data, "notes.txt"), PodDataUID, PodDataGID); err != nil {
		return err
	}
	// Times last: creating entries changes their directory's mtime. The
	// list has each directory after its content.
	for i, e := range podDataFiles {
		mt := PodDataTime.Add(time.Duration(i)*time.Minute + time.Duration(e.nsec))
		at := mt.Add(-24 * time.Hour)
		ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(data, e.name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting times of %s: %w", e.name, err)
		}
	}
	for _, d := range []string{PodReadOnlyDir, PodFullDir, PodUploadsDir} {
		p := filepath.Join(root, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if d == PodUploadsDir {
			if err := os.Chmod(p, 0o777); err != nil {
				return err
			}
		}
	}
	return buildPodRepo(filepath.Join(root, PodRepoDir))
}

// buildPodRepo makes a git repository at dir with two committed files and
// one commit of fixed author, committer and dates, with the host's git.
func buildPodRepo(dir string) error {
	git, err := lookTool("git")
	if err != nil {
		return fmt.Errorf("git not found (install the test dependencies: sudo hack/install-deps.sh): %w", err)
	}
	files := map[string]string{
		"README.md":    "# fixture repository in the pod\n",
		"src/main.txt": "main source of the pod's app\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	const date = "2021-05-06T07:08:09Z"
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Fixture", "GIT_AUTHOR_EMAIL=fixture@example.invalid", "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=Fixture", "GIT_COMMITTER_EMAIL=fixture@example.invalid", "GIT_COMMITTER_DATE=" + date,
	}
	steps := [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "README.md", "src/main.txt"},
		{"commit", "-q", "-m", PodRepoSubject},
		// Refresh the index so its stat data matches the files.
		{"update-index", "--refresh"},
	}
	for _, s := range steps {
		cmd := exec.Command(git, append([]string{"-C", dir}, s...)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	cmd := exec.Command(git, "-C", dir, "status", "--porcelain")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil || len(out) != 0 {
		return fmt.Errorf("fixture repository %s is not clean after its commit: %v: %q", dir, err, out)
	}
	return nil
}

// mountPodFixtures makes PodReadOnlyDir a read-only bind mount and
// PodFullDir a small tmpfs, in the pod's mount namespace only (its mounts
// are made slaves first, so nothing propagates back to the host), and
// checks that the pod sees them and the host does not.
func (p *Pod) mountPodFixtures() error {
	nsenter, err := lookTool("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter not found: %w", err)
	}
	mount, err := lookTool("mount")
	if err != nil {
		return fmt.Errorf("mount not found: %w", err)
	}
	ro, full := p.Path(PodReadOnlyDir), p.Path(PodFullDir)
	script := `set -e; "$1" --make-rslave /; "$1" --bind "$2" "$2"; "$1" -o remount,bind,ro "$2"; ` +
		`"$1" -t tmpfs -o size=` + fmt.Sprint(PodFullSize) + `,mode=0755 tth-full "$3"`
	if err := run(nsenter, "-t", fmt.Sprint(p.PID), "-m", "--", "/bin/sh", "-c", script, "tth-mount", mount, ro, full); err != nil {
		return fmt.Errorf("mounting the pod's fixtures: %w", err)
	}
	// The pod cannot write to the read-only mount ...
	out, err := exec.Command(nsenter, "-t", fmt.Sprint(p.PID), "-m", "-r", "-w", "--",
		"/bin/sh", "-c", "echo x > "+PodReadOnlyDir+"/.tth-check").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Read-only file system") {
		return fmt.Errorf("writing %s in the pod: want a read-only file system error, got %v: %s", PodReadOnlyDir, err, out)
	}
	// ... and the host's mount table has neither mount.
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == ro || f[4] == full) {
			return fmt.Errorf("the pod's fixture mount %s propagated to the host: %s", f[4], l)
		}
	}
	return nil
}
