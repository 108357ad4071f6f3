package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata's golden files")

// TestPrintSplits: tether queues status shows each split's phase, its
// queues' lag and counts, and per session its filter, counts and state
// (splitting, ending, failed with why), and a split without sessions.
func TestPrintSplits(t *testing.T) {
	raw, err := os.ReadFile("testdata/queuesplits.json")
	if err != nil {
		t.Fatal(err)
	}
	var splits []queuesv1.QueueSplit
	if err := json.Unmarshal(raw, &splits); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printSplits(&out, splits, time.Date(2026, 12, 3, 10, 5, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/queues-status.txt"
	if *updateGolden {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("tether queues status printed:\n%s\nwant (%s; go test ./internal/cli -run TestPrintSplits -update rewrites it):\n%s", out.Bytes(), golden, want)
	}
	out.Reset()
	printSplits(&out, nil, time.Now())
	if out.String() != "no queue splits\n" {
		t.Errorf("no splits: %q", out.String())
	}
}
