package session

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/layer"
)

func dnsQuery(name string, typ dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	out, _ := b.Finish()
	return out
}

func TestLocalAnswerAndRecord(t *testing.T) {
	s := &Session{names: newNameCache()}
	var err error
	if s.dnsLocal, err = newNameFilter("dns.filter.local", []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.answerLocally(dnsQuery("web.demo.svc.cluster.local.", dnsmessage.TypeA)); ok {
		t.Fatal("a remote name was answered locally")
	}
	q := dnsQuery("localhost.", dnsmessage.TypeA)
	var p dnsmessage.Parser
	h, _ := p.Start(q)
	qq, _ := p.Question()
	reply := localAnswer(h, qq, func(string, dnsmessage.Type) ([]netip.Addr, bool) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, true
	})
	s.names.record(reply)
	if got := s.names.namesOf(netip.MustParseAddr("127.0.0.1")); len(got) != 1 || got[0] != "localhost" {
		t.Fatalf("recorded names = %v", got)
	}
	nx := localAnswer(h, qq, func(string, dnsmessage.Type) ([]netip.Addr, bool) { return nil, false })
	var rp dnsmessage.Parser
	rh, err := rp.Start(nx)
	if err != nil || rh.RCode != dnsmessage.RCodeNameError || rh.ID != 7 {
		t.Fatalf("NXDOMAIN reply header = %+v, %v", rh, err)
	}
}

func FuzzDNSMessage(f *testing.F) {
	f.Add(dnsQuery("web.demo.svc.cluster.local.", dnsmessage.TypeA))
	f.Add(dnsQuery("x.", dnsmessage.TypeAAAA))
	f.Add([]byte{0, 1, 2})
	s := &Session{names: newNameCache()}
	s.dnsLocal, _ = newNameFilter("k", []string{"nothing.invalid"})
	f.Fuzz(func(t *testing.T, b []byte) {
		s.names.record(b)
		s.answerLocally(b)
	})
}

func FuzzRoute(f *testing.F) {
	r, err := newFSRouter(config.FS{NotFound: []string{"^/secret"}}, "read", []string{"/work/proj"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("/app/x")
	f.Add("/work")
	f.Add("/secret/x")
	f.Fuzz(func(t *testing.T, p string) {
		got := r.route(p)
		if strings.HasPrefix(p, "/proc/") && got != layer.Local {
			t.Fatalf("route(%q) = %v, /proc must stay local", p, got)
		}
		if strings.HasPrefix(p, "/secret") && got != layer.NotFound {
			t.Fatalf("route(%q) = %v, want not-found", p, got)
		}
	})
}
