package kube

import (
	"fmt"
	"testing"
)

// The parsers of the load generators' output (no cluster needed).

func TestParseWrk(t *testing.T) {
	out := `Running 4s test @ http://10.244.0.4:8080/small
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   215.82us  117.62us   4.61ms   91.62%
    Req/Sec    36.03k     1.93k   39.52k    72.00%
  Latency Distribution
     50%  196.00us
     75%  221.00us
     90%  261.00us
     99%    1.20ms
  179284 requests in 4.00s, 20.18MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
Requests/sec:  35855.21
Transfer/sec:      4.04MB
`
	rps, p50, p99, errs := parseWrk(t, out)
	if rps != 35855.21 || p50 != 196 || p99 != 1200 || errs != "Socket errors: connect 0, read 0, write 0, timeout 3" {
		t.Errorf("got %v %v %v %q", rps, p50, p99, errs)
	}
}

func TestParseH2load(t *testing.T) {
	out := `finished in 4.00s, 20537.25 req/s, 1.02MB/s
requests: 82149 total, 82181 started, 82149 done, 82149 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 82149 2xx, 0 3xx, 0 4xx, 0 5xx
`
	if rps, errs := parseH2load(t, out); rps != 20537.25 || errs != "" {
		t.Errorf("got %v %q", rps, errs)
	}
}

func TestMirrorLeftOut(t *testing.T) {
	msg := func(n, total int) string {
		return fmt.Sprintf("tether: mirror: %d requests to port 8080 were not copied to you in the last 2s (%d since you subscribed): your side did not keep up\n", n, total)
	}
	for _, tc := range []struct {
		stderr string
		want   int
	}{
		{"", 0},
		{msg(5, 5), 5},
		{msg(5, 5) + "other\n" + msg(7, 12), 12},
	} {
		if got := mirrorLeftOut(tc.stderr); got != tc.want {
			t.Errorf("mirrorLeftOut(%q) = %d, want %d", tc.stderr, got, tc.want)
		}
	}
}
