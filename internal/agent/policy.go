package agent

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/policy"
	"github.com/tether-dev/tether/internal/protocol"
)

// sessionPolicy is what the platform team's policies say of one session
// (its grant's Policies and Names), compiled. The agent enforces it
// whatever the client asks.
type sessionPolicy struct {
	rules []policy.Rules
	set   *policy.Set
	// names are the grant's: the cluster DNS names of addresses.
	names    map[netip.Addr][]string
	rawNames map[string][]string
	// hostnames: some outgoing rule matches on a hostname, so the names
	// the pod resolves are watched.
	hostnames bool
}

// newSessionPolicy compiles g's policies; nil when it has none.
func newSessionPolicy(rules []policy.Rules, names map[string][]string) (*sessionPolicy, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	set, err := policy.Compile(rules)
	if err != nil {
		return nil, fmt.Errorf("a policy the operator sent cannot be compiled: %w (the platform team must fix it)", err)
	}
	p := &sessionPolicy{rules: rules, set: set, names: map[netip.Addr][]string{}, rawNames: names, hostnames: policy.HasHostnameRules(rules)}
	for a, ns := range names {
		if addr, err := netip.ParseAddr(a); err == nil {
			p.names[addr.Unmap()] = ns
		}
	}
	return p, nil
}

// refusalError is a policy's refusal as the errno the program sees.
type refusalError struct {
	r     *policy.Refusal
	errno syscall.Errno
}

func (e *refusalError) Error() string   { return e.r.Error() }
func (e *refusalError) Unwrap() []error { return []error{e.r, e.errno} }

// refusedBy records r for ss and returns it as an error with errno.
func (ss *session) refusedBy(action string, r *policy.Refusal, errno syscall.Errno) error {
	ss.record(protocol.Refusal{Action: action, Detail: fmt.Sprintf("%s: %s", ss.grant.Who(), r.Error()), Policy: r.Policy, Rule: r.Rule})
	return &refusalError{r: r, errno: errno}
}

// checkSubscribe applies the policies to a subscribe request.
func (ss *session) checkSubscribe(req protocol.Request) error {
	p := ss.policy()
	if p == nil {
		return nil
	}
	var r *policy.Refusal
	if req.Mode == protocol.ModeSteal {
		r = p.set.Steal(httpfilter.PolicyView(req.Filter))
	} else {
		r = p.set.Mirror()
	}
	if r == nil {
		return nil
	}
	return ss.refusedBy(subscribeAction(req), r, syscall.EACCES)
}

// checkDial applies the policies to a dial of network addr; names
// come from the grant and from what the target's pod resolved.
func (s *Server) checkDial(ss *session, network, addr string) error {
	p := ss.policy()
	if p == nil || !p.set.LimitsOutgoing() {
		return nil
	}
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		// A name would be resolved out of the policies' sight.
		return &refusalError{r: &policy.Refusal{Policy: "tether-agent", Rule: "outgoing policies", What: "a dial of " + addr + " (dial an address: resolve the name first, as tether does)"}, errno: syscall.EINVAL}
	}
	names := s.namesOf(p, dst.Addr())
	if r := p.set.Outgoing(dst.Addr(), dst.Port(), network, names); r != nil {
		return ss.refusedBy("outgoing", r, syscall.ECONNREFUSED)
	}
	return nil
}

// namesOf are the names of a: the grant's and the ones the target's pod
// resolved lately.
func (s *Server) namesOf(p *sessionPolicy, a netip.Addr) []string {
	a = a.Unmap()
	names := append([]string(nil), p.names[a]...)
	if p.hostnames {
		names = append(names, s.resolved().names(a)...)
	}
	return names
}

// filterEnv applies the policies to the target's environment: excluded
// variables left out, masked ones masked; refusals say which, once each
// rule.
func (ss *session) filterEnv(env []string) ([]string, []policy.Refusal) {
	p := ss.policy()
	if p == nil {
		return env, nil
	}
	out := env[:0:0]
	var refused []policy.Refusal
	var names [][]string // of each refusal, sorted at the end
	byRule := map[string]int{}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		mode, r := p.set.Env(name)
		switch mode {
		case policy.EnvExcluded:
		case policy.EnvMasked:
			out = append(out, name+"="+policy.Masked)
		default:
			out = append(out, kv)
			continue
		}
		key := r.Policy + "\x00" + r.Rule
		if i, ok := byRule[key]; ok {
			names[i] = append(names[i], name)
			continue
		}
		byRule[key] = len(refused)
		refused = append(refused, *r)
		names = append(names, []string{name})
	}
	// The names in a stable order, whatever the process's environ's.
	for i := range refused {
		slices.Sort(names[i])
		refused[i].What = "variables " + strings.Join(names[i], ", ")
	}
	return out, refused
}

// checkFile applies the policies to an operation on path p of the target
// (as asked, and rel as resolved inside its root): not found and local
// paths do not exist for the session, read-only ones and, with block
// fs-write, all are refused for writing.
func (f fileOps) checkFile(p, rel string, write bool) error {
	pol := f.ss.policy()
	if pol == nil {
		return nil
	}
	for _, q := range []string{path.Clean("/" + p), path.Clean("/" + rel)} {
		switch mode, r := pol.set.File(q); mode {
		case policy.FSNotFound, policy.FSLocal:
			// No record: a path that does not exist is no refusal to
			// report, and the client keeps fs.local paths local.
			return &refusalError{r: r, errno: syscall.ENOENT}
		}
		if write {
			if r := pol.set.Write(q); r != nil {
				return f.ss.refusedBy("fs-write", r, syscall.EROFS)
			}
		}
	}
	return nil
}

// hidden reports whether the policies hide dir/name from a listing.
func (f fileOps) hidden(dir, name string) bool {
	pol := f.ss.policy()
	if pol == nil {
		return false
	}
	mode, _ := pol.set.File(path.Join("/", dir, name))
	return mode == policy.FSNotFound || mode == policy.FSLocal
}

// policyConns are a session's outgoing connections, so that a policy
// edit can end the ones it now refuses.
type policyConn struct {
	c       net.Conn
	network string
	dst     string
}

// trackConn registers an outgoing connection until the returned func.
func (ss *session) trackConn(c net.Conn, network, dst string) (untrack func()) {
	pc := &policyConn{c: c, network: network, dst: dst}
	ss.connMu.Lock()
	if ss.conns == nil {
		ss.conns = map[*policyConn]struct{}{}
	}
	ss.conns[pc] = struct{}{}
	ss.connMu.Unlock()
	return func() {
		ss.connMu.Lock()
		delete(ss.conns, pc)
		ss.connMu.Unlock()
	}
}

// setPolicy replaces ss's policies (an edit, or a resume with the
// operator's current ones) and ends what they now refuse: its outgoing
// connections and incoming subscriptions.
func (s *Server) setPolicy(ss *session, p *sessionPolicy) {
	ss.pol.Store(p)
	if p == nil {
		return
	}
	ss.connMu.Lock()
	var cut []*policyConn
	for pc := range ss.conns {
		cut = append(cut, pc)
	}
	ss.connMu.Unlock()
	for _, pc := range cut {
		if err := s.checkDial(ss, pc.network, pc.dst); err != nil {
			s.Log.Info("connection ended by a policy edit", "session", ss.id, "dst", pc.dst, "err", err)
			pc.c.Close()
			ss.notify(fmt.Sprintf("a policy was changed: %v; the connection to %s was closed", err, pc.dst))
		}
	}
	if in := s.incomingIfUsed(); in != nil {
		for _, sub := range in.subscriptionsOf(ss) {
			if err := ss.checkSubscribe(protocol.Request{Mode: sub.mode, Filter: sub.wire, Port: sub.port}); err != nil {
				s.Log.Info("subscription ended by a policy edit", "session", ss.id, "port", sub.port, "err", err)
				in.unsubscribe(ss, sub.port)
				ss.notify(fmt.Sprintf("a policy was changed: %v; port %d's traffic goes to the target again", err, sub.port))
			}
		}
	}
}

// notify tells the session's client msg (if it is connected).
func (ss *session) notify(msg string) {
	st, err := ss.open()
	if err != nil {
		return
	}
	defer st.Close()
	st.SetWriteDeadline(time.Now().Add(2 * time.Second))
	protocol.WriteFrame(st, protocol.Incoming{Notice: msg})
}

// updatePolicy gives session id (if this server has it) new policies and
// says how many sessions it changed.
func (s *Server) updatePolicy(id string, rules []policy.Rules, names map[string][]string) (int, error) {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss == nil {
		return 0, nil
	}
	p, err := newSessionPolicy(rules, names)
	if err != nil {
		return 0, err
	}
	s.setPolicy(ss, p)
	s.Log.Info("policies changed", "session", ss.id, "user", ss.grant.Who(), "policies", len(rules))
	return 1, nil
}
