// Command testlog prints `go test -json` as go test's own output and
// keeps the events, so that hack/test.sh can end with the failures, each
// with its own output, whatever the order its lines came in (parallel
// tests, -v, race reports).
//
//	go test -json ... | testlog [-v] -log FILE   print go test's output; append the events to FILE
//	testlog -summary FILE...                     the failures in the event logs
//
// Without -v, only failed tests' output is printed (as go test does);
// with -v, every test's, without the === RUN/PAUSE/CONT lines.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	verbose := flag.Bool("v", false, "print passing tests' output too")
	logFile := flag.String("log", "", "append the events to this file")
	summary := flag.Bool("summary", false, "print the failures in the event logs named as arguments")
	flag.Parse()
	if *summary {
		var evs []event
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fatal(err)
			}
			got, err := readEvents(f, nil)
			f.Close()
			if err != nil {
				fatal(fmt.Errorf("%s: %w", name, err))
			}
			evs = append(evs, got...)
		}
		writeSummary(os.Stdout, evs)
		return
	}
	var keep io.Writer = io.Discard
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fatal(err)
		}
		defer f.Close()
		keep = f
	}
	p := newPrinter(os.Stdout, *verbose)
	if _, err := readEvents(os.Stdin, func(e event, raw []byte) {
		keep.Write(append(raw, '\n'))
		p.add(e)
	}); err != nil {
		fatal(err)
	}
	p.flush()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "testlog:", err)
	os.Exit(2)
}

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // of a build-output or build-fail event
	Test       string
	Elapsed    float64
	Output     string
}

// readEvents reads events from r, calling each (if set) for every event;
// a line that is not JSON (go's own messages before a test starts) is an
// output event of no package.
func readEvents(r io.Reader, each func(e event, raw []byte)) ([]event, error) {
	var evs []event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		raw := append([]byte(nil), sc.Bytes()...)
		var e event
		if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil {
			e = event{Action: "output", Output: string(raw) + "\n"}
			raw, _ = json.Marshal(e)
		}
		if each != nil {
			each(e, raw)
		} else {
			evs = append(evs, e)
		}
	}
	return evs, sc.Err()
}
