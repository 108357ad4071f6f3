package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// MuslBinary compiles the C source test/harness/testdata/SRC (e.g.
// "udp/udpsend.c") with `musl-gcc -static -O1 -Wall -Werror CFLAGS...`, like
// MuslProbe, once per test binary and name, and returns the binary's path.
// Callers using the same name must pass the same source and flags.
func MuslBinary(t testing.TB, src, name string, cflags ...string) string {
	t.Helper()
	extraMu.Lock()
	key := "musl:" + name
	a, ok := extraBins[key]
	if !ok {
		a = &artifact{}
		extraBins[key] = a
	}
	extraMu.Unlock()
	return a.get(t, func(dir string) (string, error) {
		root, err := FindModuleRoot()
		if err != nil {
			return "", err
		}
		cc, err := lookTool("musl-gcc")
		if err != nil {
			return "", fmt.Errorf("musl-gcc not found (install musl-tools: sudo hack/install-deps.sh)")
		}
		path := filepath.Join(root, "test", "harness", "testdata", filepath.FromSlash(src))
		out := filepath.Join(dir, name)
		args := append([]string{"-static", "-O1", "-Wall", "-Werror"}, cflags...)
		args = append(args, "-o", out, path)
		if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("musl-gcc %s failed: %v\n%s", strings.Join(args, " "), err, b)
		}
		return out, nil
	})
}
