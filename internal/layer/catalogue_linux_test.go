package layer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCatalogue holds the machine-check rows of the error catalogue
// (docs/errors.md): an old kernel and a kernel without seccomp user
// notification. The rest of the catalogue runs cli.Run in
// internal/cli/catalogue_test.go, but package cli cannot replace what Check
// reads, so these rows check Check's message here. `tether exec` prints it
// as "tether: MESSAGE" and exits 1; `tether doctor` prints it after
// "seccomp supervisor: FAIL:" and exits 1.
func TestCatalogue(t *testing.T) {
	const allActions = "kill_process kill_thread trap errno user_notif trace log allow\n"
	rows := []struct {
		id, name string
		release  string // uname -r
		actions  string // the content of actions_avail; "-" for no such file
		problem  []string
		fix      []string
	}{
		{"MACHINE-KERNEL-OLD", "Linux 5.15", "5.15.0-1051-azure", allActions,
			[]string{"kernel Linux 5.15 is too old", "tether needs Linux 5.19 or newer"}, []string{"run on a newer kernel"}},
		{"MACHINE-KERNEL-OLD", "Linux 4.19", "4.19.0", allActions,
			[]string{"kernel Linux 4.19 is too old"}, []string{"run on a newer kernel"}},
		{"MACHINE-KERNEL-OLD", "unrecognised release", "custom-kernel", allActions,
			[]string{`unrecognised kernel release "custom-kernel"`, "tether needs Linux 5.19 or newer"}, []string{"uname -r should print MAJOR.MINOR"}},
		{"MACHINE-SECCOMP-UNAVAILABLE", "no user_notif action", "6.1.0-18-amd64", "kill_process kill_thread trap errno trace log allow\n",
			[]string{"seccomp user notification is not available"}, []string{"CONFIG_SECCOMP_FILTER", "outside gVisor"}},
		{"MACHINE-SECCOMP-UNAVAILABLE", "no seccomp at all", "6.1.0-18-amd64", "-",
			[]string{"seccomp is not available", "no such file"}, []string{"CONFIG_SECCOMP_FILTER", "outside gVisor"}},
	}
	docs := catalogueDocs(t)
	for _, r := range rows {
		t.Run(r.id+"/"+r.name, func(t *testing.T) {
			if !strings.Contains(docs, "`"+r.id+"`") {
				t.Errorf("docs/errors.md does not list %s", r.id)
			}
			file := filepath.Join(t.TempDir(), "actions_avail")
			if r.actions != "-" {
				if err := os.WriteFile(file, []byte(r.actions), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			restore := kernelRelease
			kernelRelease = func() (string, error) { return r.release, nil }
			defer func() { kernelRelease = restore }()
			restoreFile := seccompActionsFile
			seccompActionsFile = file
			defer func() { seccompActionsFile = restoreFile }()

			err := Check()
			if err == nil {
				t.Fatal("Check() = nil")
			}
			for _, s := range append(append([]string{}, r.problem...), r.fix...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Check() = %q, lacks %q", err, s)
				}
			}
		})
	}
}

// catalogueDocs returns docs/errors.md.
func catalogueDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "errors.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
