package report

import (
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct {
		p    int
		want float64
	}{{50, 5}, {99, 10}, {10, 1}, {0, 1}, {100, 10}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("p%d = %v, want %v", c.p, got, c.want)
		}
	}
	m := Samples("x", "", xs)
	if m.N != 10 || m.Min != 1 || m.P50 != 5 || m.P99 != 10 || m.Max != 10 {
		t.Errorf("Samples = %+v", m)
	}
	if r := Runs("x", "", []float64{3, 1, 2}); r.P50 != 2 || r.P99 != 0 {
		t.Errorf("Runs = %+v", r)
	}
}

func TestTargets(t *testing.T) {
	row := func(base, tether float64, tg Target) Row {
		return Row{Name: "r", Stat: "median", Unit: "µs", Baseline: Runs("b", "", []float64{base}), Tether: Runs("t", "", []float64{tether}), Target: &tg}
	}
	for _, c := range []struct {
		r       Row
		met     bool
		verdict string
	}{
		{row(100, 104, Target{Of: "ratio", Op: "<=", Limit: 1.05}), true, "yes"},
		{row(100, 106, Target{Of: "ratio", Op: "<=", Limit: 1.05}), false, "no"},
		{row(100, 96, Target{Of: "ratio", Op: ">=", Limit: 0.95}), true, "yes"},
		{row(2, 12, Target{Of: "added", Op: "<=", Limit: 5}), false, "no (added 10.0 µs)"},
		{row(0, 900, Target{Of: "tether", Op: "<=", Limit: 1000}), true, "yes"},
	} {
		if c.r.Met() != c.met {
			t.Errorf("%+v: met %v, want %v", c.r.Target, c.r.Met(), c.met)
		}
		if _, v := c.r.TargetText(); v != c.verdict {
			t.Errorf("%+v: verdict %q, want %q", c.r.Target, v, c.verdict)
		}
	}
}

func TestSummary(t *testing.T) {
	f := File{Name: "outgoing", Rows: []Row{
		{Name: "in", Stat: "p50", Unit: "µs", Baseline: Samples("pf", "", []float64{100}), Tether: Samples("t", "", []float64{150}), Summary: true},
		{Name: "out", Stat: "p50", Unit: "µs", Baseline: Samples("pf", "", []float64{100}), Tether: Samples("t", "", []float64{150})},
	}}
	s := Summary([]File{f}, nil)
	if !strings.Contains(s, "| outgoing: in (p50) | pf | 100 µs | 150 µs | 1.50x | - | - |") || strings.Contains(s, "out (p50)") {
		t.Errorf("summary:\n%s", s)
	}
}
