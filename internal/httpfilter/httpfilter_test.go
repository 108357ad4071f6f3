package httpfilter

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/config"
)

func req(method, path string, headers ...string) Request {
	r := Request{Method: method, Header: http.Header{}}
	r.Path, r.Query, _ = strings.Cut(path, "?")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func TestMatch(t *testing.T) {
	alice := config.HTTPFilter{HeaderFilter: "^x-tether-user: alice$"}
	tests := []struct {
		name string
		cfg  config.HTTPFilter
		req  Request
		want bool
	}{
		{"header match", alice, req("GET", "/", "X-Tether-User", "alice"), true},
		{"header case-insensitive name", alice, req("GET", "/", "x-tether-user", "alice"), true},
		{"header other value", alice, req("GET", "/", "X-Tether-User", "bob"), false},
		{"header absent", alice, req("GET", "/"), false},
		{"header anchored", alice, req("GET", "/", "X-Tether-User", "alice2"), false},
		{"header second value", alice, req("GET", "/", "X-Tether-User", "bob", "X-Tether-User", "alice"), true},
		{"path", config.HTTPFilter{PathFilter: "^/api/v2/"}, req("GET", "/api/v2/users"), true},
		{"path miss", config.HTTPFilter{PathFilter: "^/api/v2/"}, req("GET", "/api/v1/users"), false},
		{"path with query", config.HTTPFilter{PathFilter: `debug=1`}, req("GET", "/x?debug=1"), true},
		{"path case-sensitive", config.HTTPFilter{PathFilter: "^/API"}, req("GET", "/api"), false},
		{"method", config.HTTPFilter{MethodFilter: "^(POST|PUT)$"}, req("put", "/"), true},
		{"method miss", config.HTTPFilter{MethodFilter: "^(POST|PUT)$"}, req("GET", "/"), false},
		{"all_of", config.HTTPFilter{AllOf: []config.HTTPMatch{{Header: "^x-user: a$"}, {Path: "^/orders"}}}, req("GET", "/orders/1", "X-User", "a"), true},
		{"all_of partial", config.HTTPFilter{AllOf: []config.HTTPMatch{{Header: "^x-user: a$"}, {Path: "^/orders"}}}, req("GET", "/cart", "X-User", "a"), false},
		{"any_of", config.HTTPFilter{AnyOf: []config.HTTPMatch{{Header: "^x-user: a$"}, {Method: "DELETE"}}}, req("DELETE", "/"), true},
		{"any_of none", config.HTTPFilter{AnyOf: []config.HTTPMatch{{Header: "^x-user: a$"}, {Method: "DELETE"}}}, req("GET", "/"), false},
		{"header and path combined", config.HTTPFilter{HeaderFilter: "x-user: a", PathFilter: "^/a"}, req("GET", "/b", "X-User", "a"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(tt.req); got != tt.want {
				t.Fatalf("%v matching %+v = %v, want %v", f, tt.req, got, tt.want)
			}
		})
	}
	if f, err := Compile(config.HTTPFilter{}); f != nil || err != nil {
		t.Fatalf("empty config = %v, %v; want nil, nil", f, err)
	}
	if f, _ := Compile(config.HTTPFilter{}); f.Match(req("GET", "/")) {
		t.Fatal("nil filter matched")
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []config.HTTPFilter{
		{HeaderFilter: "("},
		{AnyOf: []config.HTTPMatch{{}}},
		{AllOf: []config.HTTPMatch{{Path: "[z-a]"}}},
	} {
		if _, err := Compile(c); err == nil || !strings.Contains(err.Error(), "incoming.http_filter") {
			t.Errorf("Compile(%+v) = %v, want an error naming the key", c, err)
		}
	}
}

func TestOverlaps(t *testing.T) {
	mk := func(c config.HTTPFilter) *Filter {
		f, err := Compile(c)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	alice := mk(config.HTTPFilter{HeaderFilter: "^x-tether-user: alice$"})
	alice2 := mk(config.HTTPFilter{HeaderFilter: "x-tether-user: alice"})
	bob := mk(config.HTTPFilter{HeaderFilter: "^x-tether-user: bob$"})
	aliceOrBob := mk(config.HTTPFilter{HeaderFilter: "^x-tether-user: (alice|bob)$"})
	anyUser := mk(config.HTTPFilter{HeaderFilter: "^x-tether-user: .+$"})
	apiPath := mk(config.HTTPFilter{PathFilter: "^/api"})
	tests := []struct {
		a, b *Filter
		want bool
	}{
		{alice, alice2, true},
		{alice, bob, false},
		{alice, aliceOrBob, true},
		{bob, aliceOrBob, true},
		{anyUser, bob, true},
		{alice, apiPath, false},
		{mk(config.HTTPFilter{AllOf: []config.HTTPMatch{{Header: "^x-tether-user: alice$"}, {Path: "^/api"}}}), apiPath, true},
	}
	for i, tt := range tests {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("%d: Overlaps(%v, %v) = %v, want %v", i, tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("^x-tether-user: alice$", "/api", "GET", "X-Tether-User", "alice")
	f.Add("(a|b)+c?", "^/x", "P.*", "k", "v")
	f.Fuzz(func(t *testing.T, header, path, method, hname, hval string) {
		flt, err := Compile(config.HTTPFilter{HeaderFilter: header, AnyOf: []config.HTTPMatch{{Path: path}, {Method: method}}})
		if err != nil {
			return
		}
		r := req("GET", "/p", hname, hval)
		flt.Match(r)
		for _, ex := range flt.Examples() {
			// Every example of an any_of-free header filter must match it.
			_ = flt.Match(ex)
		}
		Overlaps(flt, flt)
	})
}
