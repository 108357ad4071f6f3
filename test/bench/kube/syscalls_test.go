package kube

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/bench/report"
)

// TestSyscalls: what the supervisor costs programs that mostly work
// locally, on a Kubernetes target: a loop of a trapped syscall that stays
// local (open+close of a local file: the supervisor looks at the path and
// lets the kernel do it), and whole programs (a cached go build of a small
// module, python3 -c pass, node -e 0), each under tether vs directly.
func TestSyscalls(t *testing.T) {
	benchEnabled(t)
	benchCluster(t)
	cfg := writeConfig(t, "syscalls", "2s", "")
	holdAgent(t, cfg)
	tether := func(argv ...string) []string { return tetherExec(cfg, "off", argv...) }
	direct := func(argv ...string) []string { return argv }

	// A small module, built once untimed on both paths (warm build cache).
	mod := filepath.Join(binDir, "gomod")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"go.mod":  "module benchmod\n\ngo 1.26\n",
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n)\n\nfunc main() { fmt.Println(http.StatusOK) }\n",
	} {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = "python3"
	}
	for _, tool := range []string{"go", python, "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (hack/install-deps.sh installs python3 and node)", tool)
		}
	}
	gobuild := []string{"go", "-C", mod, "build", "-o", filepath.Join(mod, "out"), "."}
	mustRun(t, 5*time.Minute, nil, direct(gobuild...)...)
	mustRun(t, 5*time.Minute, kubeEnv(), tether(gobuild...)...)

	type prog struct {
		name   string
		argv   []string
		rounds int
		// perOp reads the figure from the output (the loop's own timing);
		// nil: the command's wall time.
		perOp bool
	}
	progs := []prog{
		{"open+close of a local file (trapped, continued), per call", []string{loopBin, "open", "100000", "/etc/passwd"}, 7, true},
		{"start-up: `true`", []string{"true"}, 15, false},
		{"go build of a small module (cached)", gobuild, 5, false},
		{"python3 -c pass", []string{python, "-c", "pass"}, 15, false},
		{"node -e 0", []string{"node", "-e", "0"}, 15, false},
	}
	var rows []report.Row
	for _, p := range progs {
		var d, w []float64
		for range p.rounds {
			for _, side := range []struct {
				wrap func(...string) []string
				out  *[]float64
			}{{direct, &d}, {tether, &w}} {
				out, dur := mustRun(t, 5*time.Minute, kubeEnv(), side.wrap(p.argv...)...)
				if p.perOp {
					*side.out = append(*side.out, kv(t, out, "ns_per_op")/1000)
				} else {
					*side.out = append(*side.out, float64(dur.Microseconds())/1000)
				}
			}
		}
		row := report.Row{
			Name: p.name, Stat: "median", Unit: "ms",
			Baseline: report.Runs("direct", cmdline(direct(p.argv...)), d),
			Tether:   report.Runs("tether exec", cmdline(tether(p.argv...)), w),
			Summary:  true,
		}
		if p.perOp {
			row.Unit = "µs"
			row.Target = &report.Target{Of: "added", Op: "<=", Limit: 5}
		}
		rows = append(rows, row)
	}
	writeResults(t, report.File{
		Name:  "syscalls",
		Title: "supervisor cost on Kubernetes: programs under tether exec -t deployment/X vs directly",
		Notes: []string{
			"the loop times its 100000 calls from inside the process (per-call figure, µs); the programs: wall time of the whole command, ms,",
			"which under tether includes the session's start-up (see the `true` row); direct and tether runs alternate; another session keeps the agent running;",
			"target: the supervisor adds <= 5 µs to a trapped syscall (a quiet machine: this one is shared)",
		},
		Rows: rows,
	})
}
