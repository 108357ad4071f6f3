package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// printer writes events as go test's own output. Without verbose, a
// test's output is held until it ends: dropped when it passes, handed to
// its parent (or printed, at the top) when it fails, so a failure shows
// its subtests' output and nothing of the passing ones.
type printer struct {
	w       io.Writer
	verbose bool
	held    map[string][]string // package + "\x00" + test -> lines
}

func newPrinter(w io.Writer, verbose bool) *printer {
	return &printer{w: w, verbose: verbose, held: map[string][]string{}}
}

// framing are the lines go test -json adds to say which test runs.
func framing(line string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

func key(pkg, test string) string { return pkg + "\x00" + test }

func (p *printer) add(e event) {
	switch {
	case e.Action == "build-output":
		io.WriteString(p.w, e.Output)
	case e.Action == "output" && (framing(e.Output) || e.Test == "" && e.Output == "PASS\n"):
	case e.Action == "output" && (p.verbose || e.Test == ""):
		io.WriteString(p.w, e.Output)
	case e.Action == "output":
		k := key(e.Package, e.Test)
		p.held[k] = append(p.held[k], e.Output)
	case e.Test == "" || p.verbose:
	case e.Action == "pass" || e.Action == "skip":
		delete(p.held, key(e.Package, e.Test))
	case e.Action == "fail":
		k := key(e.Package, e.Test)
		lines := p.held[k]
		delete(p.held, k)
		if i := strings.LastIndex(e.Test, "/"); i >= 0 {
			pk := key(e.Package, e.Test[:i])
			p.held[pk] = append(p.held[pk], lines...)
			return
		}
		io.WriteString(p.w, strings.Join(lines, ""))
	}
	if e.Test == "" && e.Action == "fail" && !p.verbose {
		// A package that failed without its tests ending (a panic, a
		// timeout): what its unfinished tests said is part of the story.
		p.flushPackage(e.Package)
	}
}

func (p *printer) flushPackage(pkg string) {
	var keys []string
	for k := range p.held {
		if strings.HasPrefix(k, pkg+"\x00") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(p.w, "(output of %s, which did not end)\n%s", strings.SplitN(k, "\x00", 2)[1], strings.Join(p.held[k], ""))
		delete(p.held, k)
	}
}

// flush prints what is still held (the input ended mid-test).
func (p *printer) flush() {
	pkgs := map[string]bool{}
	for k := range p.held {
		pkgs[strings.SplitN(k, "\x00", 2)[0]] = true
	}
	for pkg := range pkgs {
		p.flushPackage(pkg)
	}
}
