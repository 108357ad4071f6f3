package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseOutgoingRule(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		in   string
		want OutgoingRule
		str  string // String(), when it differs from in
	}{
		{in: "10.0.0.0/8", want: OutgoingRule{Prefix: pfx("10.0.0.0/8")}},
		{in: "10.1.2.3/8", want: OutgoingRule{Prefix: pfx("10.0.0.0/8")}, str: "10.0.0.0/8"},
		{in: "redis:6379", want: OutgoingRule{Host: "redis", Port: 6379}},
		{in: "udp://1.2.3.4:53", want: OutgoingRule{Proto: "udp", Prefix: pfx("1.2.3.4/32"), Port: 53}},
		{in: ":53", want: OutgoingRule{Port: 53}},
		{in: "*:53", want: OutgoingRule{Port: 53}, str: ":53"},
		{in: "*", want: OutgoingRule{}},
		{in: "tcp://", want: OutgoingRule{Proto: "tcp"}},
		{in: "TCP://Example.COM.", want: OutgoingRule{Proto: "tcp", Host: "example.com"}, str: "tcp://example.com"},
		{in: "*.svc.cluster.local", want: OutgoingRule{Host: "*.svc.cluster.local"}},
		{in: "tcp://*.svc.cluster.local:443", want: OutgoingRule{Proto: "tcp", Host: "*.svc.cluster.local", Port: 443}},
		{in: "[fd00::1]:443", want: OutgoingRule{Prefix: pfx("fd00::1/128"), Port: 443}},
		{in: "[fd00::/8]:443", want: OutgoingRule{Prefix: pfx("fd00::/8"), Port: 443}},
		{in: "fd00::/8", want: OutgoingRule{Prefix: pfx("fd00::/8")}},
		{in: "::1", want: OutgoingRule{Prefix: pfx("::1/128")}},
		{in: "::ffff:10.1.2.3", want: OutgoingRule{Prefix: pfx("10.1.2.3/32")}, str: "10.1.2.3"},
		{in: "::ffff:10.0.0.0/104", want: OutgoingRule{Prefix: pfx("10.0.0.0/8")}, str: "10.0.0.0/8"},
		{in: " my-svc_1.ns ", want: OutgoingRule{Host: "my-svc_1.ns"}, str: "my-svc_1.ns"},
	} {
		got, err := ParseOutgoingRule(tc.in)
		if err != nil {
			t.Errorf("ParseOutgoingRule(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseOutgoingRule(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		str := tc.str
		if str == "" {
			str = tc.in
		}
		if got.String() != str {
			t.Errorf("ParseOutgoingRule(%q).String() = %q, want %q", tc.in, got.String(), str)
		}
		// String gives back an entry that parses to the same rule.
		again, err := ParseOutgoingRule(got.String())
		if err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", tc.in, again, err)
		}
	}
}

func TestParseOutgoingRuleErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":               `empty entry: want [tcp://|udp://][host|*.domain|ip|cidr][:port]`,
		"http://x":       `"http://x": unknown protocol "http": use tcp:// or udp://, or no prefix for both`,
		"redis:abc":      `"redis:abc": bad port "abc": want a port number 1-65535`,
		"redis:0":        `"redis:0": bad port "0": want a port number 1-65535`,
		"redis:65536":    `"redis:65536": bad port "65536": want a port number 1-65535`,
		"redis:":         `"redis:": missing port after ':'`,
		"10.0.0.0/33":    `"10.0.0.0/33": bad CIDR range "10.0.0.0/33": want an address/bits such as 10.0.0.0/8`,
		"1.2.3":          `"1.2.3": neither an IP address nor a host name`,
		"tcp://1.2.3:80": `"tcp://1.2.3:80": host "1.2.3": neither an IP address nor a host name`,
		"a*b.com":        `"a*b.com": a wildcard is only allowed as a leading "*."`,
		"a b":            `"a b": not a host name (bad character ' ')`,
		"a..b":           `"a..b": not a host name (empty or overlong label)`,
		"fd00::1:443:x":  `"fd00::1:443:x": "fd00::1:443:x" is not an IPv6 address or range (write [ADDRESS]:PORT for one with a port)`,
		"[fd00::1":       `"[fd00::1": missing ] after IPv6 address`,
		"[fd00::1]443":   `"[fd00::1]443": want :PORT after ], got "443"`,
		"[redis]:80":     `"[redis]:80": "redis" in brackets is not an IP address`,
		"fe80::1%eth0":   `"fe80::1%eth0": IPv6 zones (%eth0) are not supported`,
		"udp://*.:53":    `"udp://*.:53": host "*.": a wildcard is only allowed as a leading "*."`,
		"tcp://" + strings.Repeat("a", 64) + ".com": `"tcp://` + strings.Repeat("a", 64) + `.com": host "` + strings.Repeat("a", 64) + `.com": not a host name (empty or overlong label)`,
	} {
		_, err := ParseOutgoingRule(in)
		if err == nil || err.Error() != want {
			t.Errorf("ParseOutgoingRule(%q):\n got: %v\nwant: %s", in, err, want)
		}
	}
}

func TestParseOutgoingFilter(t *testing.T) {
	rules, err := ParseOutgoingFilter([]string{"10.0.0.0/8", "redis:6379"})
	if err != nil || len(rules) != 2 || rules[1].Host != "redis" {
		t.Fatalf("got %+v, %v", rules, err)
	}
	_, err = ParseOutgoingFilter([]string{"10.0.0.0/8", "redis:x"})
	if want := `outgoing filter entry 1: "redis:x": bad port "x": want a port number 1-65535`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	rules, err = ParseOutgoingFilter(nil)
	if err != nil || len(rules) != 0 {
		t.Fatalf("nil: %+v, %v", rules, err)
	}
}

func TestOutgoingRuleMatch(t *testing.T) {
	addr := netip.MustParseAddr
	none := netip.Addr{}
	type conn struct {
		proto, host string
		addr        netip.Addr
		port        uint16
	}
	for _, tc := range []struct {
		rule string
		conn conn
		want bool
	}{
		{"10.0.0.0/8", conn{"tcp", "", addr("10.1.2.3"), 80}, true},
		{"10.0.0.0/8", conn{"udp", "db", addr("10.1.2.3"), 5432}, true},
		{"10.0.0.0/8", conn{"tcp", "", addr("11.1.2.3"), 80}, false},
		{"10.0.0.0/8", conn{"tcp", "", addr("::ffff:10.1.2.3"), 80}, true}, // v4-mapped
		{"10.0.0.0/8", conn{"tcp", "ten", none, 80}, false},                // only the name known
		{"::ffff:10.0.0.0/104", conn{"tcp", "", addr("10.9.9.9"), 1}, true},
		{"fd00::/8", conn{"tcp", "", addr("fd12::1"), 1}, true},
		{"fd00::/8", conn{"tcp", "", addr("fe80::1%eth0"), 1}, false},
		{"fe80::/10", conn{"tcp", "", addr("fe80::1%eth0"), 1}, true}, // zones ignored
		{"redis:6379", conn{"tcp", "redis", addr("10.0.0.1"), 6379}, true},
		{"redis:6379", conn{"tcp", "REDIS.", none, 6379}, true},
		{"redis:6379", conn{"tcp", "redis", addr("10.0.0.1"), 6380}, false},
		{"redis:6379", conn{"tcp", "", addr("10.0.0.1"), 6379}, false}, // name unknown
		{"redis", conn{"udp", "redis", none, 1}, true},
		{"redis", conn{"udp", "redis.ns", none, 1}, false},
		{"*.svc.cluster.local", conn{"tcp", "api.ns.svc.cluster.local", none, 80}, true},
		{"*.svc.cluster.local", conn{"tcp", "svc.cluster.local", none, 80}, false},
		{"*.svc.cluster.local", conn{"tcp", "xsvc.cluster.local", none, 80}, false},
		{"udp://1.2.3.4:53", conn{"udp", "", addr("1.2.3.4"), 53}, true},
		{"udp://1.2.3.4:53", conn{"tcp", "", addr("1.2.3.4"), 53}, false},
		{"udp://1.2.3.4:53", conn{"udp", "", addr("1.2.3.4"), 54}, false},
		{":53", conn{"udp", "", addr("8.8.8.8"), 53}, true},
		{":53", conn{"tcp", "dns", none, 53}, true},
		{":53", conn{"tcp", "dns", none, 80}, false},
		{"tcp://", conn{"tcp", "", addr("1.1.1.1"), 443}, true},
		{"tcp://", conn{"udp", "", addr("1.1.1.1"), 443}, false},
		{"*", conn{"udp", "", none, 9}, true},
	} {
		r, err := ParseOutgoingRule(tc.rule)
		if err != nil {
			t.Fatal(err)
		}
		c := tc.conn
		if got := r.Match(c.proto, c.host, c.addr, c.port); got != tc.want {
			t.Errorf("%q.Match(%q, %q, %v, %d) = %v, want %v", tc.rule, c.proto, c.host, c.addr, c.port, got, tc.want)
		}
	}
}
