package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func events(t *testing.T, file string) []event {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, err := readEvents(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// The logs in testdata are go test -json of a package with a passing
// test, two parallel subtests (one fails), a data race and a t.Fatal
// (race.json under -race, verbose.json without), and of one that does
// not build (build.json).
func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		file       string
		want, lack []string
	}{
		{"testdata/race.json",
			[]string{
				"== in short: 3 failure(s)\n",
				"FAIL TestSub/a: s_test.go:5: a failed\n",
				"FAIL TestRace: data race: /tmp/tl/sample/s_test.go:11 against /tmp/tl/sample/s_test.go:12\n",
				"FAIL TestTop: s_test.go:16: top failed\n",
				"--- FAIL: TestSub/a (0.01s) in sample\n    s_test.go:5: a log\n",
			},
			[]string{"TestPass", "quiet", "b log", "testing.tRunner", "--- FAIL: TestSub (", "=== RUN"}},
		{"testdata/verbose.json",
			[]string{"== in short: 2 failure(s)\n", "FAIL TestTop: s_test.go:16: top failed\n"},
			[]string{"TestRace", "TestPass"}},
		{"testdata/build.json",
			[]string{"--- FAIL: package example.com/tl/sample\n", "FAIL example.com/tl/sample: sample/bad.go:2:12: undefined: undefined\n", "== in short: 1 failure(s)"},
			[]string{"[build failed]", "(no output)"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			writeSummary(&b, events(t, tc.file))
			for _, s := range tc.want {
				if !strings.Contains(b.String(), s) {
					t.Errorf("summary lacks %q:\n%s", s, b.String())
				}
			}
			for _, s := range tc.lack {
				if strings.Contains(b.String(), s) {
					t.Errorf("summary has %q:\n%s", s, b.String())
				}
			}
		})
	}
}

// TestPrinter: without -v only failed tests' output, in go test's form;
// with -v everything but the framing lines.
func TestPrinter(t *testing.T) {
	for _, tc := range []struct {
		verbose    bool
		want, lack []string
	}{
		{false,
			[]string{"    s_test.go:5: a failed\n--- FAIL: TestSub/a (", "--- FAIL: TestRace", "WARNING: DATA RACE", "FAIL\texample.com/tl/sample\t"},
			[]string{"quiet", "b log", "=== RUN", "PASS\n"}},
		{true,
			[]string{"    s_test.go:3: quiet\n--- PASS: TestPass", "b log", "--- FAIL: TestTop"},
			[]string{"=== RUN", "=== CONT", "=== PAUSE"}},
	} {
		var b bytes.Buffer
		p := newPrinter(&b, tc.verbose)
		for _, e := range events(t, "testdata/race.json") {
			p.add(e)
		}
		p.flush()
		for _, s := range tc.want {
			if !strings.Contains(b.String(), s) {
				t.Errorf("verbose %v: output lacks %q:\n%s", tc.verbose, s, b.String())
			}
		}
		for _, s := range tc.lack {
			if strings.Contains(b.String(), s) {
				t.Errorf("verbose %v: output has %q:\n%s", tc.verbose, s, b.String())
			}
		}
	}
}
