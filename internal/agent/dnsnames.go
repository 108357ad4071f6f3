package agent

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Bounds of what the agent remembers of the names the target's pod
// resolved, for the policies' hostname rules.
const (
	maxResolved    = 4096
	minResolvedTTL = time.Minute      // a name kept at least this long after its answer
	maxResolvedTTL = 30 * time.Minute // and at most this
)

// resolvedNames remembers, for each address, the names DNS answers the
// target's pod got said it has (a name, its CNAMEs): an outgoing rule on
// hostname holds for a connection to an address the pod resolved for
// that name.
type resolvedNames struct {
	mu    sync.Mutex
	addrs map[netip.Addr]map[string]time.Time // name → until
	now   func() time.Time
}

func newResolvedNames() *resolvedNames {
	return &resolvedNames{addrs: map[netip.Addr]map[string]time.Time{}, now: time.Now}
}

// resolved is the server's memory of the names its target resolved.
func (s *Server) resolved() *resolvedNames {
	s.namesOnce.Do(func() { s.names = newResolvedNames() })
	return s.names
}

// observe reads one DNS answer (a datagram from a name server) and
// remembers the names of its addresses. Anything that is not an answer
// is ignored.
func (r *resolvedNames) observe(msg []byte) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response || h.RCode != dnsmessage.RCodeSuccess {
		return
	}
	var names []string
	qs, err := p.AllQuestions()
	if err != nil {
		return
	}
	for _, q := range qs {
		names = append(names, q.Name.String())
	}
	type answer struct {
		addr netip.Addr
		ttl  uint32
	}
	var answers []answer
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break // the end, or a malformed rest: keep what was read
		}
		names = append(names, rh.Name.String())
		switch rh.Type {
		case dnsmessage.TypeA:
			a, err := p.AResource()
			if err != nil {
				return
			}
			answers = append(answers, answer{netip.AddrFrom4(a.A), rh.TTL})
		case dnsmessage.TypeAAAA:
			a, err := p.AAAAResource()
			if err != nil {
				return
			}
			answers = append(answers, answer{netip.AddrFrom16(a.AAAA).Unmap(), rh.TTL})
		case dnsmessage.TypeCNAME:
			c, err := p.CNAMEResource()
			if err != nil {
				return
			}
			names = append(names, c.CNAME.String())
		default:
			if err := p.SkipAnswer(); err != nil {
				return
			}
		}
	}
	if len(answers) == 0 {
		return
	}
	for i, n := range names {
		names[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range answers {
		ttl := min(max(time.Duration(a.ttl)*time.Second, minResolvedTTL), maxResolvedTTL)
		m := r.addrs[a.addr]
		if m == nil {
			if len(r.addrs) >= maxResolved {
				r.expire(now)
			}
			if len(r.addrs) >= maxResolved {
				continue // full of live names: the grant's names still hold
			}
			m = map[string]time.Time{}
			r.addrs[a.addr] = m
		}
		for _, n := range names {
			m[n] = now.Add(ttl)
		}
	}
}

// expire drops the names past their time.
func (r *resolvedNames) expire(now time.Time) {
	for a, m := range r.addrs {
		for n, until := range m {
			if now.After(until) {
				delete(m, n)
			}
		}
		if len(m) == 0 {
			delete(r.addrs, a)
		}
	}
}

// names are a's names, sorted.
func (r *resolvedNames) names(a netip.Addr) []string {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n, until := range r.addrs[a.Unmap()] {
		if !now.After(until) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
