package harness

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// ModuleRoot returns the directory of the repository's go.mod, found by
// walking up from the current directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := FindModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// FindModuleRoot returns the directory of go.mod, walking up from the
// current directory (for TestMain, which has no testing.TB).
func FindModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// artifact is a binary built at most once per test binary.
type artifact struct {
	once sync.Once
	path string
	err  error
}

var (
	buildMu   sync.Mutex // one build at a time: the machine has 2 cores
	tetherBin artifact
	agentBin  artifact
	probeBin  artifact
)

func (a *artifact) get(t testing.TB, build func(dir string) (string, error)) string {
	t.Helper()
	dir := filepath.Join(RunDir(t), "bin")
	a.once.Do(func() {
		buildMu.Lock()
		defer buildMu.Unlock()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			a.err = err
			return
		}
		a.path, a.err = build(dir)
	})
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a.path
}

// goBuild builds a static (CGO_ENABLED=0, netgo) binary of pkg into dir.
func goBuild(dir, pkg, name string) (string, error) {
	root, err := FindModuleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := lookTool("go")
	if err != nil {
		return "", fmt.Errorf("go tool not found: %w", err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(goTool, "build", "-tags", "netgo,osusergo", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s failed: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// Environment variables that make the tests use prebuilt binaries (for
// example a release build) instead of building ./cmd/tether and
// ./cmd/tether-agent.
const (
	TetherBinEnv = "TETHER_INTEGRATION_TETHER_BIN"
	AgentBinEnv  = "TETHER_INTEGRATION_AGENT_BIN"
)

// Tether returns the path of the tether CLI, built from ./cmd/tether (or
// $TETHER_INTEGRATION_TETHER_BIN). It fails t (with the compiler output)
// when the build fails.
func Tether(t testing.TB) string {
	t.Helper()
	return tetherBin.get(t, func(dir string) (string, error) { return buildOrPrebuilt(dir, TetherBinEnv, "./cmd/tether", "tether") })
}

// AgentBinary returns the path of tether-agent, built from
// ./cmd/tether-agent (or $TETHER_INTEGRATION_AGENT_BIN).
func AgentBinary(t testing.TB) string {
	t.Helper()
	return agentBin.get(t, func(dir string) (string, error) {
		return buildOrPrebuilt(dir, AgentBinEnv, "./cmd/tether-agent", "tether-agent")
	})
}

func buildOrPrebuilt(dir, envVar, pkg, name string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s=%s: not an executable file (%v)", envVar, p, err)
		}
		fmt.Fprintf(os.Stderr, "harness: using prebuilt %s from %s=%s\n", name, envVar, abs)
		return abs, nil
	}
	return goBuild(dir, pkg, name)
}

// Probe returns the path of the static Go probe (test/harness/probe):
// subcommands env, get, resolve, read, ls, stat, fstat, hostname, write, udp, tcp,
// nbconnect, uring. It uses Go's pure resolver.
func Probe(t testing.TB) string {
	t.Helper()
	return probeBin.get(t, func(dir string) (string, error) {
		return goBuild(dir, "./test/harness/probe", "probe")
	})
}

// MuslProbe returns the path of the static musl C probe
// (test/harness/testdata/musl/probe.c): resolve NAME, get HOST PORT PATH,
// read FILE.
func MuslProbe(t testing.TB) string {
	t.Helper()
	return MuslBinary(t, "musl/probe.c", "musl-probe")
}

// staticBusybox finds a statically linked busybox (busybox-static).
func staticBusybox() (string, error) {
	var cands []string
	if p, err := lookTool("busybox"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, "/bin/busybox", "/usr/bin/busybox")
	for _, p := range cands {
		if isStatic(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no statically linked busybox found (install busybox-static: sudo hack/install-deps.sh)")
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if runtime.GOARCH == "amd64" && f.Machine != elf.EM_X86_64 {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

var (
	extraMu   sync.Mutex
	extraBins = map[string]*artifact{}
)

// GoBinary builds the main package pkg (e.g. "./test/bench/loop") once per
// test binary, statically like the probe, and returns its path.
func GoBinary(t testing.TB, pkg, name string) string {
	t.Helper()
	extraMu.Lock()
	a, ok := extraBins[pkg]
	if !ok {
		a = &artifact{}
		extraBins[pkg] = a
	}
	extraMu.Unlock()
	return a.get(t, func(dir string) (string, error) { return goBuild(dir, pkg, name) })
}
