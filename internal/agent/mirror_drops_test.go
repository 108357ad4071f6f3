package agent

import (
	"testing"
	"time"
)

func TestCopyRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		perSec int
		at     []time.Duration // since t0, one take each
		want   []bool
	}{
		{"a tenth of a second's burst, then none", 100, []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []bool{true, true, true, true, true, true, true, true, true, true, false}},
		{"refills at the rate", 100, []time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10 * time.Millisecond, 10 * time.Millisecond, 15 * time.Millisecond}, []bool{true, true, true, true, true, true, true, true, true, true, true, false, false}},
		{"at least one in a burst", 5, []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond}, []bool{true, false, false, true}},
		{"the bucket does not overfill", 10, []time.Duration{0, time.Hour, time.Hour, time.Hour}, []bool{true, true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newCopyRate(tc.perSec)
			for i, at := range tc.at {
				if got := r.take(t0.Add(at)); got != tc.want[i] {
					t.Fatalf("take %d at +%s = %v, want %v", i, at, got, tc.want[i])
				}
			}
		})
	}
	var none *copyRate
	if !none.take(t0) {
		t.Error("no bound refused a copy")
	}
	if d := newMirrorDrops(-1); d.rate != nil {
		t.Error("a negative rate is no bound")
	}
	if d := newMirrorDrops(0); d.rate == nil || d.rate.perSec != 1000 {
		t.Errorf("rate 0 (not said) is the default 1000: %+v", d.rate)
	}
}
