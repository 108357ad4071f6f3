// Package report writes the results of tether's benchmarks: one text file
// per scenario for people (bench/results/NAME.txt: the machine, every
// command, n, min/p50/p99/max, ratios and targets), the same as JSON for
// the summary (NAME.json), and bench/results/SUMMARY.md, the table the
// README shows. Every figure is compared with a baseline measured in the
// same run, because the benchmark machine is shared and noisy.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Measure is one side of a comparison: a distribution of samples (or of
// repeated runs' results, then P99 is 0).
type Measure struct {
	Label   string  `json:"label"`
	Command string  `json:"command,omitempty"`
	N       int     `json:"n"`
	Min     float64 `json:"min"`
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99,omitempty"`
	Max     float64 `json:"max"`
}

// Samples summarises a distribution of samples (latencies): min, p50,
// p99, max.
func Samples(label, command string, xs []float64) Measure {
	m := Runs(label, command, xs)
	if len(xs) > 0 {
		m.P99 = Percentile(xs, 99)
	}
	return m
}

// Runs summarises the results of repeated runs: min, median, max.
func Runs(label, command string, xs []float64) Measure {
	m := Measure{Label: label, Command: command, N: len(xs)}
	if len(xs) == 0 {
		return m
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m.Min, m.P50, m.Max = s[0], Percentile(s, 50), s[len(s)-1]
	return m
}

// Percentile is the p-th percentile of xs (nearest rank).
func Percentile(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(float64(p)/100*float64(len(s)))) - 1
	return s[max(0, min(len(s)-1, i))]
}

// Target is a goal from the benchmark issue: Of "ratio" (tether/baseline),
// "tether" (the tether figure itself) or "added" (tether - baseline),
// compared with Op "<=" or ">=" to Limit (in the row's unit, or x).
type Target struct {
	Of    string  `json:"of"`
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
}

// Row compares tether with a baseline on one statistic.
type Row struct {
	Name string `json:"name"`
	// Stat is the statistic compared: "p50", "p99" or "median".
	Stat string `json:"stat"`
	Unit string `json:"unit"`
	// HigherIsBetter is set for throughputs.
	HigherIsBetter bool    `json:"higher_is_better,omitempty"`
	Baseline       Measure `json:"baseline"`
	Tether         Measure `json:"tether"`
	Target         *Target `json:"target,omitempty"`
	// Summary puts the row into SUMMARY.md.
	Summary bool   `json:"summary,omitempty"`
	Note    string `json:"note,omitempty"`
}

func (r Row) value(m Measure) float64 {
	if r.Stat == "p99" {
		return m.P99
	}
	return m.P50
}

// Base and Value are the compared figures.
func (r Row) Base() float64  { return r.value(r.Baseline) }
func (r Row) Value() float64 { return r.value(r.Tether) }

// Ratio is tether / baseline (0 without a baseline).
func (r Row) Ratio() float64 {
	if r.Base() == 0 {
		return 0
	}
	return r.Value() / r.Base()
}

// Added is tether - baseline.
func (r Row) Added() float64 { return r.Value() - r.Base() }

// Met reports whether the row meets its target (false without one).
func (r Row) Met() bool {
	if r.Target == nil {
		return false
	}
	var v float64
	switch r.Target.Of {
	case "ratio":
		v = r.Ratio()
	case "added":
		v = r.Added()
	default:
		v = r.Value()
	}
	if r.Target.Op == ">=" {
		return v >= r.Target.Limit
	}
	return v <= r.Target.Limit
}

// TargetText is the target in the row's unit with the verdict, or "".
func (r Row) TargetText() (target, verdict string) {
	if r.Target == nil {
		return "", ""
	}
	t := *r.Target
	switch t.Of {
	case "ratio":
		target = fmt.Sprintf("%s %gx", t.Op, t.Limit)
	case "added":
		target = fmt.Sprintf("added %s %s", t.Op, Num(t.Limit, r.Unit))
	default:
		target = fmt.Sprintf("%s %s", t.Op, Num(t.Limit, r.Unit))
	}
	verdict = "no"
	if r.Met() {
		verdict = "yes"
	}
	if t.Of == "added" {
		verdict += fmt.Sprintf(" (added %s)", Num(r.Added(), r.Unit))
	}
	return target, verdict
}

// Num formats a figure with its unit and a precision that suits its size.
func Num(v float64, unit string) string {
	var s string
	switch a := math.Abs(v); {
	case a >= 100 || a == 0:
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// Env describes the machine and the moment of a run.
type Env struct {
	Date   string `json:"date"`
	Host   string `json:"host"`
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Load   string `json:"load"`
	Git    string `json:"git"`
}

// CurrentEnv describes this machine now; root is the repository (for git
// describe).
func CurrentEnv(root string) Env {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	git := "unknown"
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if b, err := cmd.Output(); err == nil {
		git = strings.TrimSpace(string(b))
	}
	fields := strings.Fields(string(load))
	if len(fields) > 3 {
		fields = fields[:3]
	}
	return Env{
		Date:   time.Now().UTC().Format(time.RFC3339),
		Host:   host,
		CPUs:   runtime.NumCPU(),
		Kernel: strings.TrimSpace(string(kernel)),
		Load:   strings.Join(fields, " "),
		Git:    git,
	}
}

func (e Env) String() string {
	return fmt.Sprintf("date %s · host %s · %d cpus · kernel %s · load average %s · git %s", e.Date, e.Host, e.CPUs, e.Kernel, e.Load, e.Git)
}

// File is the result of one scenario.
type File struct {
	// Name is the file name without extension (bench/results/NAME.txt).
	Name  string   `json:"name"`
	Title string   `json:"title"`
	Env   Env      `json:"env"`
	Notes []string `json:"notes,omitempty"`
	Rows  []Row    `json:"rows"`
}

// Text renders f for people.
func (f File) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# tether benchmark: %s\n# %s\n", f.Title, f.Env)
	b.WriteString("# ratio = tether / baseline of the statistic named, both measured in this run\n")
	for _, n := range f.Notes {
		fmt.Fprintf(&b, "# %s\n", n)
	}
	fmt.Fprintf(&b, "\n%-58s %-26s %12s %12s %8s  %s\n", "scenario", "baseline", "base", "tether", "ratio", "target")
	for _, r := range f.Rows {
		ratio := "-"
		if r.Ratio() != 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio())
		}
		target, verdict := r.TargetText()
		if target != "" {
			target += ": " + verdict
		}
		fmt.Fprintf(&b, "%-58s %-26s %12s %12s %8s  %s\n", r.Name+" ("+r.Stat+")", r.Baseline.Label, Num(r.Base(), r.Unit), Num(r.Value(), r.Unit), ratio, target)
	}
	b.WriteString("\nDetails\n")
	for _, r := range f.Rows {
		fmt.Fprintf(&b, "\n%s (%s, %s)\n", r.Name, r.Stat, r.Unit)
		for _, m := range []struct {
			side string
			m    Measure
		}{{"baseline", r.Baseline}, {"tether", r.Tether}} {
			fmt.Fprintf(&b, "  %-8s %s: n=%d min=%s %s=%s", m.side, m.m.Label, m.m.N, Num(m.m.Min, ""), medianName(m.m), Num(m.m.P50, ""))
			if m.m.P99 != 0 {
				fmt.Fprintf(&b, " p99=%s", Num(m.m.P99, ""))
			}
			fmt.Fprintf(&b, " max=%s\n", Num(m.m.Max, ""))
			if m.m.Command != "" {
				fmt.Fprintf(&b, "           $ %s\n", m.m.Command)
			}
		}
		if r.Ratio() != 0 {
			fmt.Fprintf(&b, "  ratio    %.3fx (added %s)\n", r.Ratio(), Num(r.Added(), r.Unit))
		}
		if target, verdict := r.TargetText(); target != "" {
			fmt.Fprintf(&b, "  target   %s: %s\n", target, verdict)
		}
		if r.Note != "" {
			fmt.Fprintf(&b, "  note     %s\n", r.Note)
		}
	}
	return b.String()
}

func medianName(m Measure) string {
	if m.P99 != 0 {
		return "p50"
	}
	return "median"
}

// Write writes dir/NAME.txt and dir/NAME.json and returns the text.
func Write(dir string, f File) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	text := f.Text()
	if err := os.WriteFile(filepath.Join(dir, f.Name+".txt"), []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("writing %s results: %w", f.Name, err)
	}
	js, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding %s results: %w", f.Name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, f.Name+".json"), append(js, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("writing %s results: %w", f.Name, err)
	}
	return text, nil
}

// Read reads every dir/*.json result, ordered by name.
func Read(dir string) ([]File, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var files []File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading results: %w", err)
		}
		var f File
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("results %s: %w", p, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// Summary renders the summary table (Markdown) of the rows marked Summary,
// files in the order of order (names; the others after them).
func Summary(files []File, order []string) string {
	rank := func(name string) int {
		if i := slices.Index(order, name); i >= 0 {
			return i
		}
		return len(order)
	}
	files = slices.Clone(files)
	sort.SliceStable(files, func(i, j int) bool { return rank(files[i].Name) < rank(files[j].Name) })
	var b strings.Builder
	b.WriteString("| scenario | baseline | baseline value | tether | ratio | target | met? |\n|---|---|--:|--:|--:|---|---|\n")
	var runs []string
	for _, f := range files {
		has := false
		for _, r := range f.Rows {
			if !r.Summary {
				continue
			}
			has = true
			ratio := "-"
			if r.Ratio() != 0 {
				ratio = fmt.Sprintf("%.2fx", r.Ratio())
			}
			target, verdict := r.TargetText()
			if target == "" {
				target, verdict = "-", "-"
			}
			fmt.Fprintf(&b, "| %s: %s (%s) | %s | %s | %s | %s | %s | %s |\n", f.Name, r.Name, r.Stat, r.Baseline.Label, Num(r.Base(), r.Unit), Num(r.Value(), r.Unit), ratio, target, verdict)
		}
		if has {
			runs = append(runs, fmt.Sprintf("[%s](%s.txt) %s (load %s)", f.Name, f.Name, f.Env.Date, f.Env.Load))
		}
	}
	if len(runs) > 0 {
		b.WriteString("\nRuns: " + strings.Join(runs, "; ") + ".\n")
	}
	return b.String()
}

// KV reads the number after "key=" in a benchmark program's output
// ("ns_per_op=123 p50_us=45 ...").
func KV(out, key string) (float64, error) {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("bad %s in %q", key, out)
			}
			return x, nil
		}
	}
	return 0, fmt.Errorf("no %s in the output %q", key, out)
}
