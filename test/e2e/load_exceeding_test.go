package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestExceeding: the comparison with a baseline lets through only the
// app's own death, and only where the baseline shows it.
func TestExceeding(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// phase builds a "during" phase from "kind@ms" failures (sent at ms,
	// failed 1 ms later) and "ok@ms" answers.
	phase := func(events ...string) loadResult {
		pc := &phaseCount{byKind: map[string]int64{}, began: t0}
		for _, e := range events {
			kind, ms, _ := strings.Cut(e, "@")
			var n int
			for _, c := range ms {
				n = n*10 + int(c-'0')
			}
			pc.sent++
			if kind == "ok" {
				pc.oks = append(pc.oks, at(n))
				continue
			}
			pc.byKind[kind]++
			pc.fails = append(pc.fails, failure{kind, at(n), at(n + 1)})
		}
		return loadResult{phases: []string{"during"}, counts: map[string]*phaseCount{"during": pc}}
	}
	appDeath := phase("ok@0", "reset@10", "refused@20", "refused@40", "ok@60")
	// killed is a phase whose agent the test killed at 9 ms; it was gone
	// at 15 ms.
	killed := func(events ...string) loadResult {
		r := phase(events...)
		r.counts["during"].death = death{at(9), at(15)}
		return r
	}
	for _, tc := range []struct {
		name      string
		res, base loadResult
		want      string // "" for none
	}{
		{"nothing", phase("ok@0", "ok@20"), phase("ok@0"), ""},
		{"a hung request without a fault", phase("ok@0", "hung@20"), phase("ok@0"), "1 hung"},
		{"a reset without a fault", phase("ok@0", "reset@20"), phase("ok@0"), "1 reset"},
		{"an EOF beyond the baseline's", phase("eof@10", "eof@20"), phase("eof@10"), "2 eof"},
		{"as many EOFs as the baseline", phase("eof@10"), phase("eof@10"), ""},
		{"refused where the baseline is not", phase("refused@10"), phase("ok@0"), "1 refused"},
		{"the app's death as in the baseline", appDeath, appDeath, ""},
		{"a reset in flight at the death", phase("reset@10", "refused@20"), appDeath, ""},
		{"a reset after the death", phase("refused@20", "reset@30"), phase("refused@20"), "1 reset"},
		{"hung in the downtime the baseline shows", phase("refused@20", "hung@30", "ok@60"), appDeath, ""},
		{"hung at the downtime's first request", phase("refused@20", "hung@20", "ok@60"), appDeath, ""},
		{"hung in a downtime, none in the baseline's", phase("refused@20", "hung@30", "ok@60"), phase("ok@0", "refused@5"), ""},
		{"hung in a downtime with no baseline downtime", phase("refused@20", "hung@30", "ok@60"), phase("ok@0"), "downtime"},
		{"hung after the app is back", phase("refused@20", "ok@30", "hung@40"), appDeath, "1 hung"},
		{"hung before the app is gone", phase("hung@10", "refused@20", "ok@30"), appDeath, "1 hung"},
		{"a wrong answer", phase("wrong@10"), phase("wrong@10"), "1 wrong"},
		{"resets in flight at the agent's death", killed("reset@10", "eof@12", "ok@20"), phase("ok@0"), ""},
		{"a reset after the agent's death", killed("reset@10", "reset@20"), phase("ok@0"), "1 reset"},
		{"more in flight at the agent's death than clients", killed("reset@8", "reset@10", "eof@12"), phase("ok@0"), "more than the 2 clients"},
		{"a reset that ended before the kill", killed("reset@5", "ok@20"), phase("ok@0"), "1 reset"},
		{"hung at the agent's death", killed("hung@10"), phase("ok@0"), "1 hung"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(tc.res.exceeding(tc.base), "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("exceeding = %q, want %q", got, tc.want)
			}
		})
	}
}
