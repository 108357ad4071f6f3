package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strings"
)

// maxLines bounds each failure's output in the summary.
const maxLines = 30

// result is one test's (or, with test "", one package's) story.
type result struct {
	pkg, test string
	action    string // pass, fail, skip; "" if it never ended
	elapsed   float64
	lines     []string
	order     int
}

// writeSummary prints every failed test with its own output, the
// failed packages' own output when no test of theirs says why (a build
// error, a panic, a timeout), then one line per failure: the test and
// its first error (for a data race, the two places that raced).
func writeSummary(w io.Writer, evs []event) {
	res := map[string]*result{}
	get := func(e event) *result {
		k := key(e.Package, e.Test)
		r := res[k]
		if r == nil {
			r = &result{pkg: e.Package, test: e.Test, order: len(res)}
			res[k] = r
		}
		return r
	}
	for _, e := range evs {
		if e.Action == "build-output" || e.Action == "build-fail" {
			// A package that does not build: its errors are its story.
			pkg, _, _ := strings.Cut(e.ImportPath, " [")
			e.Package, e.Test = pkg, ""
			e.Action = strings.TrimPrefix(e.Action, "build-")
		}
		switch e.Action {
		case "output":
			if !framing(e.Output) {
				r := get(e)
				r.lines = append(r.lines, strings.TrimRight(e.Output, "\n"))
			}
		case "pass", "fail", "skip":
			r := get(e)
			r.action, r.elapsed = e.Action, e.Elapsed
		}
	}
	var all []*result
	for _, r := range res {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].order < all[j].order })

	failedTests := map[string]bool{} // package -> a test of it failed
	var short []string
	for _, r := range all {
		if r.test == "" || (r.action != "fail" && !(r.action == "" && len(r.own()) > 0)) {
			continue
		}
		failedTests[r.pkg] = true
		byChild := r.action == "fail" && hasFailedChild(all, r) // its subtests say why
		if byChild && len(r.own()) == 0 {
			continue
		}
		state := fmt.Sprintf("%.2fs", r.elapsed)
		if r.action == "" {
			state = "did not end"
		}
		fmt.Fprintf(w, "--- FAIL: %s (%s) in %s\n", r.test, state, path.Base(r.pkg))
		printLines(w, r.own())
		if !byChild {
			short = append(short, fmt.Sprintf("%s: %s", r.test, firstError(r.own())))
		}
	}
	for _, r := range all {
		if r.test != "" || r.action != "fail" {
			continue
		}
		if !failedTests[r.pkg] {
			fmt.Fprintf(w, "--- FAIL: package %s\n", r.pkg)
			printLines(w, r.own())
			short = append(short, fmt.Sprintf("%s: %s", r.pkg, firstError(r.own())))
		}
	}
	if len(short) > 0 {
		fmt.Fprintf(w, "\n== in short: %d failure(s)\n", len(short))
		for _, s := range short {
			fmt.Fprintln(w, "FAIL", s)
		}
	}
}

func hasFailedChild(all []*result, r *result) bool {
	for _, c := range all {
		if c.pkg == r.pkg && c.action == "fail" && strings.HasPrefix(c.test, r.test+"/") {
			return true
		}
	}
	return false
}

// own is the test's output without go test's result lines.
func (r *result) own() []string {
	var out []string
	for _, l := range r.lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "--- ") || strings.HasPrefix(t, "# ") || t == "PASS" || t == "FAIL" || t == "" ||
			strings.HasPrefix(t, "ok  \t") || strings.HasPrefix(t, "FAIL\t") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// printLines prints the first maxLines of lines, race reports without
// the standard library's frames.
func printLines(w io.Writer, lines []string) {
	var kept []string
	for _, l := range lines {
		if f := raceFrame.FindStringSubmatch(l); f != nil && stdlib(f[1]) {
			if n := len(kept); n > 0 && !raceFrame.MatchString(kept[n-1]) {
				kept = kept[:n-1] // the frame's function line
			}
			continue
		}
		kept = append(kept, l)
	}
	lines = kept
	for i, l := range lines {
		if i == maxLines {
			fmt.Fprintf(w, "    (%d more lines in the log above)\n", len(lines)-maxLines)
			break
		}
		fmt.Fprintln(w, l)
	}
}

var (
	testLine  = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)
	raceFrame = regexp.MustCompile(`^\s+(/\S+\.go:\d+)`)
	raceOp    = regexp.MustCompile(`^\s*(Previous )?(read|write|Read|Write) at `)
)

// failWords are in the lines of a test that say why it failed (a t.Log
// line says how it went).
var failWords = regexp.MustCompile(`(?i)want|fail|error|timed? ?out|refused|unexpected|missing|lacks|leftover|left behind|panic|did not|does not|cannot|still|beyond`)

// firstError is the line that best says why a test failed: the two
// places of a data race (the first frame of ours in each stack), else
// the test's first file:line line that sounds like a failure, else its
// last file:line line, else its first line.
func firstError(lines []string) string {
	if s := racePlaces(lines); s != "" {
		return s
	}
	last := ""
	for _, l := range lines {
		if testLine.MatchString(l) && !strings.Contains(l, "race detected during execution of test") {
			if failWords.MatchString(l) {
				return strings.TrimSpace(l)
			}
			last = strings.TrimSpace(l)
		}
	}
	if last != "" {
		return last
	}
	if len(lines) > 0 {
		return strings.TrimSpace(lines[0])
	}
	return "(no output)"
}

// goroot is Go's own source tree, as `go env GOROOT` says.
var goroot = func() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "/usr/local/go"
	}
	return strings.TrimSpace(string(out))
}()

// stdlib reports whether a race report's file is Go's own.
func stdlib(file string) bool {
	return strings.HasPrefix(file, goroot+"/src/")
}

func racePlaces(lines []string) string {
	var places []string
	inRace, want := false, false
	for _, l := range lines {
		switch {
		case strings.Contains(l, "WARNING: DATA RACE"):
			inRace = true
		case !inRace:
		case raceOp.MatchString(l):
			want = true
		case want && raceFrame.MatchString(l):
			f := raceFrame.FindStringSubmatch(l)[1]
			if stdlib(f) {
				continue
			}
			if wd, err := os.Getwd(); err == nil {
				f = strings.TrimPrefix(f, wd+"/")
			}
			places = append(places, f)
			want = false
		case strings.HasPrefix(strings.TrimSpace(l), "=================="):
			if len(places) > 0 {
				return "data race: " + strings.Join(places, " against ")
			}
		}
	}
	if len(places) > 0 {
		return "data race: " + strings.Join(places, " against ")
	}
	return ""
}
