package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
	"github.com/tether-dev/tether/test/harness"
)

// TestSupervisorBeforeAfter compares this build's supervisor with an
// earlier one (TETHER_BENCH_BEFORE=GIT-REF, built here from that commit),
// both against the same agent in the same run: the per-call cost of local
// trapped syscalls and whole programs, wall and CPU time. It answers "did
// this change make programs slower?" with ratios from one run.
func TestSupervisorBeforeAfter(t *testing.T) {
	benchEnabled(t)
	ref := os.Getenv("TETHER_BENCH_BEFORE")
	if ref == "" {
		t.Skip("set TETHER_BENCH_BEFORE=GIT-REF to compare the supervisor with an earlier build")
	}
	before := buildAt(t, ref)
	env := harness.Setup(t)
	after := harness.Tether(t)
	agent := harness.StartAgent(t, env.Pod)
	loop := harness.GoBinary(t, "./test/bench/loop", "loop")
	mod := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":  "module benchmod\n\ngo 1.26\n",
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n)\n\nfunc main() { fmt.Println(http.StatusOK) }\n",
	} {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gobuild := []string{"go", "-C", mod, "build", "-o", filepath.Join(mod, "out"), "."}
	run := func(bin string, argv ...string) harness.Result {
		full := append([]string{bin, "exec", "--agent-addr", agent.Addr, "--"}, argv...)
		r := harness.RunLocal(t, harness.ExecOpts{Timeout: 5 * time.Minute, Env: []string{"HOME=" + os.Getenv("HOME"), "GOCACHE=" + goEnv(t, "GOCACHE"), "GOPATH=" + goEnv(t, "GOPATH")}}, full...)
		if !r.OK() {
			t.Fatalf("%s", r)
		}
		return r
	}
	run(after, gobuild...) // warm the build cache
	type prog struct {
		name   string
		argv   []string
		rounds int
		perOp  bool
	}
	progs := []prog{
		{"open+close of a local file (trapped, continued), per call", []string{loop, "open", "100000", "/etc/passwd"}, 7, true},
		{"stat of a local file (trapped, continued), per call", []string{loop, "stat", "100000", "/etc/passwd"}, 7, true},
		{"fstat of a local file's fd, per call (trapped since issue 10)", []string{loop, "fstat", "100000", "/etc/passwd"}, 7, true},
		{"start-up: `true`", []string{"true"}, 15, false},
		{"go build of a small module (cached)", gobuild, 5, false},
		{"python3 -c pass", []string{"/usr/bin/python3", "-c", "pass"}, 15, false},
		{"node -e 0", []string{"node", "-e", "0"}, 15, false},
	}
	us := func(ns float64) float64 { return ns / 1000 }
	var rows []report.Row
	for _, p := range progs {
		var b, a, bc, ac []float64
		for range p.rounds {
			rb, ra := run(before, p.argv...), run(after, p.argv...)
			if p.perOp {
				b = append(b, us(parseKV(t, rb.Stdout, "ns_per_op")))
				a = append(a, us(parseKV(t, ra.Stdout, "ns_per_op")))
			} else {
				b = append(b, float64(rb.Duration.Microseconds())/1000)
				a = append(a, float64(ra.Duration.Microseconds())/1000)
			}
			bc = append(bc, float64(rb.CPU.Microseconds())/1000)
			ac = append(ac, float64(ra.CPU.Microseconds())/1000)
		}
		unit := "ms"
		if p.perOp {
			unit = "µs"
		}
		cmd := strings.Join(p.argv, " ")
		rows = append(rows,
			report.Row{Name: p.name, Stat: "median", Unit: unit, Summary: true,
				Baseline: report.Runs("before ("+ref+")", "tether exec -- "+cmd, b),
				Tether:   report.Runs("after (this build)", "tether exec -- "+cmd, a)},
			report.Row{Name: p.name + ": CPU time (user+sys, whole run)", Stat: "median", Unit: "ms",
				Baseline: report.Runs("before ("+ref+")", "tether exec -- "+cmd, bc),
				Tether:   report.Runs("after (this build)", "tether exec -- "+cmd, ac)})
	}
	writeResults(t, report.File{
		Name:  "supervisor-before-after",
		Title: "the supervisor before and after a change: this build against " + ref + ", same agent, same run",
		Notes: []string{"test/harness network-namespace pod, agent started by hand; before and after runs alternate; medians of the rounds; CPU time is the whole tether exec (supervisor, session and the command)"},
		Rows:  rows,
	})
}

// buildAt builds cmd/tether as of git ref (a detached worktree of it).
func buildAt(t *testing.T, ref string) string {
	t.Helper()
	root := harness.ModuleRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, ref).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add %s: %v\n%s", ref, err, out)
	}
	t.Cleanup(func() { exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run() })
	bin := filepath.Join(dir, "tether-before")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/tether")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building tether at %s: %v\n%s", ref, err, out)
	}
	return bin
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatal(fmt.Errorf("go env %s: %w", key, err))
	}
	return strings.TrimSpace(string(out))
}
