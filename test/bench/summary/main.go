// Command summary writes bench/results/SUMMARY.md, the table of tether's
// benchmark results (make bench runs it last), from the NAME.json files
// the benchmarks write next to their NAME.txt.
//
//	summary [-dir bench/results]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tether-dev/tether/test/bench/report"
)

// order is the order of the scenarios in the table: the issue's.
var order = []string{"startup", "startup-replicas", "outgoing", "incoming-steal", "passthrough", "mirror", "syscalls", "resources", "operator", "queues-cluster", "queues", "dataplane", "incoming"}

func main() {
	dir := flag.String("dir", "bench/results", "results directory")
	flag.Parse()
	files, err := report.Read(*dir)
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no results (*.json) in %s: run make bench", *dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "summary: %v\n", err)
		os.Exit(1)
	}
	text := "# tether benchmark summary\n\n" +
		"`make bench` on the local cluster (hack/bench.sh). Each figure is compared with a baseline\n" +
		"measured in the same run (ratio = tether / baseline); the files linked below have the machine,\n" +
		"the commands, n and min/p50/p99/max. \"median\" is the median of repeated runs; p50/p99 are\n" +
		"percentiles of all requests.\n\n" + report.Summary(files, order)
	out := filepath.Join(*dir, "SUMMARY.md")
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "summary: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(text)
}
