package httpfilter

import (
	"net/http"
	"net/textproto"
	"testing"

	"golang.org/x/net/http/httpguts"
)

func TestHeaderOf(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"(?i)^x-tether-user: dev5$", "X-Tether-User"},
		{"(?i)^X-TETHER-USER: (dev1|dev2)$", "X-Tether-User"},
		{"(?i)^x-tether-user:", "X-Tether-User"},
		{"(?i)^baggage: .*k8s\\.user=me", "Baggage"},
		{"(?i)x-tether-user: dev5", ""},            // not anchored: any line containing it
		{"(?i)^x-tether-user", ""},                 // no colon: X-Tether-User-Id too
		{"(?i)^x-a: 1|^x-b: 2", ""},                // two headers
		{"(?im)^x-a: 1", ""},                       // ^ at any line
		{"(?i)^x-\u212Aey: 1", "X-Key"},            // the Kelvin sign folds to k: X-Key lines
		{"(?i)^(x-a): 1", ""},                      // a group: not told apart here
		{"(?i)^x a: 1", ""},                        // not a token
		{"(?i)^: 1", ""},                           // no name
		{"(?i)^x-a[:]", ""},                        // a class, not a literal colon
		{"^X-Tether-User: dev5$", "X-Tether-User"}, // case-sensitive, canonical
		{"^x-tether-user: dev5$", ""},              // case-sensitive, matches no canonical line
		{"(?i)^content-type: application/json", "Content-Type"},
	} {
		if got := headerOf(tc.expr); got != tc.want {
			t.Errorf("headerOf(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// slowMatch is Match without the one-header fast path: every line tried.
func slowMatch(f *Filter, r Request) bool {
	g := *f
	g.header = ""
	return g.Match(NewRequest(r.Method, r.Path, r.Query, r.Header))
}

// TestHeaderFastPath: a filter limited to one header matches exactly what
// it matches when every header line is tried.
func TestHeaderFastPath(t *testing.T) {
	reqs := []http.Header{
		{},
		{"X-Tether-User": {"dev5"}},
		{"X-Tether-User": {"dev1", "dev5"}},
		{"X-Tether-User-Id": {"dev5"}},
		{"Other": {"x-tether-user: dev5"}},
		{"X-Tether-User": {"DEV5"}, "Accept": {"*/*"}},
		{"Baggage": {"a=b,k8s.user=me"}},
	}
	for _, expr := range []string{"^x-tether-user: dev5$", "^x-tether-user:", "^X-TETHER-USER: dev[0-9]$", "^baggage: .*k8s\\.user=me", "^x-tether-user: dev5|^other:"} {
		f, err := leaf("h", kindHeader, expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range reqs {
			r := NewRequest("GET", "/", "", h)
			if got, want := f.Match(r), slowMatch(f, r); got != want {
				t.Errorf("filter %q (header %q) on %v: %v, every line: %v", expr, f.header, h, got, want)
			}
		}
	}
}

func FuzzHeaderFastPath(f *testing.F) {
	f.Add("^x-tether-user: dev5$", "X-Tether-User", "dev5")
	f.Add("^x-tether-user:", "x-tether-user", "")
	f.Add("^Kk: v", "Kk", "v")
	f.Fuzz(func(t *testing.T, expr, name, value string) {
		flt, err := leaf("h", kindHeader, expr)
		if err != nil || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return
		}
		h := http.Header{textproto.CanonicalMIMEHeaderKey(name): {value}}
		r := NewRequest("GET", "/", "", h)
		if got, want := flt.Match(r), slowMatch(flt, r); got != want {
			t.Errorf("filter %q (header %q) on %s: %s: %v, every line: %v", expr, flt.header, name, value, got, want)
		}
	})
}

// BenchmarkUnmatched100: an unmatched request against a hundred
// sessions' filters, each limited to its header (fast) or trying every
// header line (lines), as the agent does for each passed-through request.
func BenchmarkUnmatched100(b *testing.B) {
	var fast, lines []*Filter
	for i := range 100 {
		f, err := leaf("h", kindHeader, "^x-tether-user: dev"+string(rune('a'+i%26))+string(rune('a'+i/26))+"$")
		if err != nil {
			b.Fatal(err)
		}
		g := *f
		g.header = ""
		fast, lines = append(fast, f), append(lines, &g)
	}
	h := http.Header{"Host": {"web"}, "User-Agent": {"wrk"}, "Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Traceparent": {"00-abc-def-01"}, "Content-Length": {"0"}}
	for _, bc := range []struct {
		name string
		fs   []*Filter
	}{{"fast", fast}, {"lines", lines}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				r := NewRequest("GET", "/small", "", h)
				for _, f := range bc.fs {
					if f.Match(r) {
						b.Fatal("matched")
					}
				}
			}
		})
	}
}
