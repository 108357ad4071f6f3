package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func set(t *testing.T, ps ...Rules) *Set {
	t.Helper()
	s, err := Compile(ps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func refusedBy(t *testing.T, r *Refusal, policy, rule string) {
	t.Helper()
	switch {
	case policy == "" && r != nil:
		t.Errorf("refused: %v", r)
	case policy != "" && r == nil:
		t.Errorf("allowed, want refused by %s (%s)", policy, rule)
	case policy != "" && (r.Policy != policy || !strings.Contains(r.Rule, rule)):
		t.Errorf("refused by %q (%s), want %s (%s)", r.Policy, r.Rule, policy, rule)
	}
}

func TestIncoming(t *testing.T) {
	cluster := Rules{Name: "ClusterPolicy no-unfiltered", Block: []string{BlockStealWithoutFilter}}
	ns := Rules{Name: "Policy shop/user-header", RequireHeaderFilter: `^x-tether-user: .+$`}
	s := set(t, cluster, ns)
	refusedBy(t, s.Steal(nil), "ClusterPolicy no-unfiltered", "block: steal-without-filter")
	refusedBy(t, s.Steal(hdr("x-other: me")), "Policy shop/user-header", "requireHeaderFilter")
	refusedBy(t, s.Steal(hdr("x-tether-user: alice")), "", "")
	refusedBy(t, s.Mirror(), "", "")
	refusedBy(t, set(t, ns).Steal(nil), "Policy shop/user-header", "requireHeaderFilter")
	all := set(t, Rules{Name: "P", Block: []string{BlockIncoming}})
	refusedBy(t, all.Steal(hdr("x-tether-user: a")), "P", "block: incoming")
	refusedBy(t, all.Mirror(), "P", "block: incoming")
	m := set(t, Rules{Name: "P", Block: []string{BlockMirror, BlockQueueSplit}})
	refusedBy(t, m.Mirror(), "P", "block: mirror")
	refusedBy(t, m.Steal(nil), "", "")
	refusedBy(t, m.QueueSplit(), "P", "block: queue-split")
	for _, bad := range []struct {
		r    Rules
		want string
	}{
		{Rules{Name: "Policy x/bad", RequireHeaderFilter: "^(x"}, "Policy x/bad: incoming.requireHeaderFilter"},
		{Rules{Name: "Policy x/bad", Block: []string{"stel"}}, `Policy x/bad: block: "stel" is not a feature`},
		{Rules{Name: "Policy x/bad", EnvMask: []string{"[A"}}, `Policy x/bad: env: "[A" is not a wildcard`},
		{Rules{Name: "Policy x/bad", FSNotFound: []string{"(a"}}, `Policy x/bad: fs.notFound`},
	} {
		if _, err := Compile([]Rules{bad.r}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", bad.r, err, bad.want)
		}
	}
}

func hdr(h string) *HTTPFilter { return &HTTPFilter{All: []string{h}, Text: h} }

func TestRequireHeaderFilter(t *testing.T) {
	s := set(t, Rules{Name: "P", RequireHeaderFilter: `^x-tether-user: .+$`})
	for _, tc := range []struct {
		name string
		f    HTTPFilter
		ok   bool
	}{
		{"its header", HTTPFilter{All: []string{"x-tether-user: me"}}, true},
		{"anchored", HTTPFilter{All: []string{"^x-tether-user: me$"}}, true},
		{"anchored, case-insensitive", HTTPFilter{All: []string{"(?i)^x-tether-user: me$"}}, true},
		{"anchored, empty value", HTTPFilter{All: []string{"^x-tether-user: $"}}, false},
		{"a path only", HTTPFilter{All: []string{""}}, false},
		{"all_of with it", HTTPFilter{All: []string{"x-other: 1", "x-tether-user: me"}}, true},
		{"any_of, each with it", HTTPFilter{AnyOf: []string{"x-tether-user: a", "x-tether-user: b"}}, true},
		{"any_of, one without", HTTPFilter{AnyOf: []string{"x-tether-user: a", ""}}, false},
		{"any_of, one with another header", HTTPFilter{AnyOf: []string{"x-tether-user: a", "x-other: b"}}, false},
	} {
		if r := s.Steal(&tc.f); (r == nil) != tc.ok {
			t.Errorf("%s: %v, want allowed %v", tc.name, r, tc.ok)
		}
	}
}

func TestFilesAndEnv(t *testing.T) {
	s := set(t,
		Rules{Name: "P1", FSReadOnly: []string{"^/app/config(/|$)"}, FSNotFound: []string{`^/etc/secret`}},
		Rules{Name: "P2", FSLocal: []string{"^/app/config/local"}, EnvExclude: []string{"*_PASSWORD"}, EnvMask: []string{"DB_*"}},
	)
	for _, tc := range []struct {
		path   string
		mode   FSMode
		policy string
	}{
		{"/app/config/app.yaml", FSReadOnly, "P1"},
		{"/app/config", FSReadOnly, "P1"},
		{"/app/configs", FSAsConfigured, ""},
		{"/app/config/local.yaml", FSLocal, "P2"},
		{"/etc/secret/token", FSNotFound, "P1"},
		{"/tmp/x", FSAsConfigured, ""},
	} {
		mode, r := s.File(tc.path)
		if mode != tc.mode || (r == nil) != (tc.policy == "") || (r != nil && r.Policy != tc.policy) {
			t.Errorf("File(%s) = %v, %v; want %v by %q", tc.path, mode, r, tc.mode, tc.policy)
		}
	}
	refusedBy(t, s.Write("/app/config/app.yaml"), "P1", "fs.readOnly")
	refusedBy(t, s.Write("/tmp/x"), "", "")
	w := set(t, Rules{Name: "W", Block: []string{BlockFSWrite}})
	refusedBy(t, w.Write("/tmp/x"), "W", "block: fs-write")
	for _, tc := range []struct {
		name string
		mode EnvMode
	}{{"DB_PASSWORD", EnvExcluded}, {"DB_HOST", EnvMasked}, {"HOME", EnvAsConfigured}, {"PASSWORD", EnvAsConfigured}} {
		if mode, _ := s.Env(tc.name); mode != tc.mode {
			t.Errorf("Env(%s) = %v, want %v", tc.name, mode, tc.mode)
		}
	}
}

func TestOutgoing(t *testing.T) {
	redis := Rules{Name: "Policy shop/no-redis", OutgoingBlock: []OutgoingRule{
		{Hostname: `^redis\.shop\.svc\.cluster\.local$`},
		{CIDR: "10.96.0.10", Port: 6379, Protocol: "tcp"},
	}}
	only := Rules{Name: "ClusterPolicy in-cluster", OutgoingAllow: []OutgoingRule{
		{CIDR: "10.0.0.0/8", Except: []string{"10.99.0.0/16"}},
		{Hostname: `\.example\.com$`, Port: 443},
	}}
	s := set(t, redis, only)
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name   string
		dst    string
		port   uint16
		proto  string
		names  []string
		policy string
		rule   string
	}{
		{"redis by name", "10.244.0.7", 6379, "tcp", []string{"redis.shop.svc.cluster.local."}, "Policy shop/no-redis", "hostname"},
		{"redis's ClusterIP", "10.96.0.10", 6379, "tcp", nil, "Policy shop/no-redis", "10.96.0.10/32 port 6379 tcp"},
		{"the ClusterIP's other port", "10.96.0.10", 80, "tcp", nil, "", ""},
		{"the ClusterIP over udp", "10.96.0.10", 6379, "udp", nil, "", ""},
		{"another service", "10.96.3.4", 8080, "tcp", []string{"web.shop.svc.cluster.local"}, "", ""},
		{"in the except", "10.99.1.1", 80, "tcp", nil, "ClusterPolicy in-cluster", "no rule allows it"},
		{"outside", "192.0.2.1", 80, "tcp", nil, "ClusterPolicy in-cluster", "no rule allows it"},
		{"allowed by name and port", "192.0.2.1", 443, "tcp", []string{"api.example.com"}, "", ""},
		{"named, other port", "192.0.2.1", 80, "tcp", []string{"api.example.com"}, "ClusterPolicy in-cluster", "no rule allows it"},
		{"an IPv4-mapped address", "::ffff:10.96.0.10", 6379, "tcp", nil, "Policy shop/no-redis", "port 6379"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedBy(t, s.Outgoing(a(tc.dst), tc.port, tc.proto, tc.names), tc.policy, tc.rule)
		})
	}
	blocked := set(t, Rules{Name: "P", Block: []string{BlockOutgoing}})
	refusedBy(t, blocked.Outgoing(a("10.1.1.1"), 80, "tcp", nil), "P", "block: outgoing")
	refusedBy(t, set(t).Outgoing(a("192.0.2.1"), 80, "tcp", nil), "", "")
	for _, bad := range []OutgoingRule{{CIDR: "10.0.0/8"}, {Hostname: "(x"}, {Protocol: "sctp"}, {CIDR: "10.0.0.0/8", Except: []string{"nope"}}, {Port: 70000}} {
		if _, err := Compile([]Rules{{Name: "P", OutgoingBlock: []OutgoingRule{bad}}}); err == nil || !strings.Contains(err.Error(), "P: outgoing.block[0]") {
			t.Errorf("rule %+v: %v, want an error naming it", bad, err)
		}
	}
}

func TestRefusalMessage(t *testing.T) {
	r := set(t, Rules{Name: "ClusterPolicy x", Block: []string{BlockSteal}}).Steal(hdr("a: b"))
	if r == nil || r.Error() != "ClusterPolicy x refuses stealing incoming traffic (block: steal)" {
		t.Fatalf("%v", r)
	}
}
