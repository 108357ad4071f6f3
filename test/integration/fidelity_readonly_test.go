package integration

import (
	"maps"
	"os"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// TestFidelityReadOnlyMetadata: in read mode (the default) every change to
// an existing remote path fails like on a read-only file system (EROFS,
// "Read-only file system"), a change under a missing remote directory
// fails with ENOENT, and nothing changes in the pod.
func TestFidelityReadOnlyMetadata(t *testing.T) {
	f := start(t)
	pod := f.env.Pod
	const erofs, enoent = "Read-only file system", "No such file or directory"
	cases := []struct {
		name string
		argv []string
		want string // in the output
	}{
		{"chmod", []string{"chmod", "0600", "/app/response.txt"}, erofs},
		{"chmod-dir", []string{"chmod", "0700", "/app/data/sub"}, erofs},
		{"chown", []string{"chown", "1:1", "/app/response.txt"}, erofs},
		{"ln-s", []string{"ln", "-s", "response.txt", "/app/new-link"}, erofs},
		{"ln", []string{"ln", "/app/response.txt", "/app/new-hard"}, erofs},
		{"truncate", []string{"truncate", "-s", "3", "/app/response.txt"}, erofs},
		{"touch-d", []string{"touch", "-d", "2020-01-02 03:04:05 UTC", "/app/response.txt"}, erofs},
		{"mkdir", []string{"mkdir", "/app/new-dir"}, erofs},
		{"mkdir-p", []string{"mkdir", "-p", "/app/data/new-dir/a"}, erofs},
		{"rm", []string{"rm", "-f", "/app/response.txt"}, erofs},
		{"mv", []string{"mv", "/app/response.txt", "/app/moved.txt"}, erofs},
		// Missing paths: the lookup fails first, as on a real read-only mount.
		{"chmod-missing", []string{"chmod", "0600", "/app/missing.txt"}, enoent},
		{"ln-s-missing-dir", []string{"ln", "-s", "x", "/app/missing-dir/link"}, enoent},
		{"truncate-missing-dir", []string{"truncate", "-s", "0", "/app/missing-dir/x"}, enoent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := metaSnapshot(t, pod.Path("/app"))
			wantFail(t, f.tether(t, "", c.argv...), c.want)
			if after := metaSnapshot(t, pod.Path("/app")); !maps.Equal(before, after) {
				for _, k := range sortedKeys(after) {
					if before[k] != after[k] {
						t.Errorf("pod's /app/%s changed in read mode:\n  before %q\n  after  %q", k, before[k], after[k])
					}
				}
				for _, k := range sortedKeys(before) {
					if _, ok := after[k]; !ok {
						t.Errorf("pod's /app/%s disappeared in read mode: was %q", k, before[k])
					}
				}
			}
			if _, err := os.Lstat("/app"); err == nil {
				t.Fatalf("%v created /app locally", c.argv)
			}
		})
	}
	// Reads still work after all that.
	r := f.tether(t, "", "cat", "/app/response.txt")
	if !r.OK() || r.Stdout != harness.PodResponse {
		t.Errorf("cat /app/response.txt after the refused changes: want %q\n%s", harness.PodResponse, r)
	}
}
