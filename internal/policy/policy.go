// Package policy decides what the platform team's Policies and
// ClusterPolicies (policies.tether.dev) allow a session on one target:
// for each operation (a steal, a mirror, a dial, an open, an environment
// variable) whether it is refused, by which policy and rule. It is pure
// and links nothing of Kubernetes: tether-operator chooses the policies
// that select a session and hands their Rules to the agent, which calls
// it whatever the client sent; the CLI calls it to say what a config
// would be refused.
package policy

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Refusal is an operation a policy refuses: its Error says which policy,
// which rule and what, for the user and the audit trail.
type Refusal struct {
	Policy string // "ClusterPolicy no-unfiltered-steal"
	Rule   string // "block: steal-without-filter"
	What   string // "a steal without an HTTP filter"
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s refuses %s (%s)", r.Policy, r.What, r.Rule)
}

// Set is the policies that select one target, compiled.
type Set struct {
	policies []compiled
}

type compiled struct {
	name      string
	rules     Rules
	block     map[string]bool
	reqFilter *regexp.Regexp
	readOnly  []*regexp.Regexp
	local     []*regexp.Regexp
	notFound  []*regexp.Regexp
	allow     []rule
	deny      []rule
}

// Compile compiles the rules of the policies that select a session. A
// policy that cannot be compiled (a bad regex or CIDR) is an error naming
// it: the caller refuses the session rather than run it with the policy
// left out.
func Compile(rs []Rules) (*Set, error) {
	s := &Set{}
	for _, r := range rs {
		c, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Name, err)
		}
		s.policies = append(s.policies, c)
	}
	return s, nil
}

// Rules are the set's policies as compiled.
func (s *Set) Rules() []Rules {
	out := make([]Rules, len(s.policies))
	for i, p := range s.policies {
		out[i] = p.rules
	}
	return out
}

// Names are the policies of the set, in order.
func (s *Set) Names() []string {
	out := make([]string, len(s.policies))
	for i, p := range s.policies {
		out[i] = p.name
	}
	return out
}

func compile(r Rules) (compiled, error) {
	c := compiled{name: r.Name, rules: r, block: map[string]bool{}}
	for _, b := range r.Block {
		if !Blockable(b) {
			return c, fmt.Errorf("block: %q is not a feature (%s)", b, strings.Join(Features, ", "))
		}
		c.block[b] = true
	}
	var err error
	if r.RequireHeaderFilter != "" {
		if c.reqFilter, err = regexp.Compile(r.RequireHeaderFilter); err != nil {
			return c, fmt.Errorf("incoming.requireHeaderFilter: %w", err)
		}
	}
	for _, l := range []struct {
		field string
		in    []string
		out   *[]*regexp.Regexp
	}{{"fs.readOnly", r.FSReadOnly, &c.readOnly}, {"fs.local", r.FSLocal, &c.local}, {"fs.notFound", r.FSNotFound, &c.notFound}} {
		for _, expr := range l.in {
			re, err := regexp.Compile(expr)
			if err != nil {
				return c, fmt.Errorf("%s: %w", l.field, err)
			}
			*l.out = append(*l.out, re)
		}
	}
	for _, g := range append(append([]string(nil), r.EnvExclude...), r.EnvMask...) {
		if _, err := path.Match(g, ""); err != nil {
			return c, fmt.Errorf("env: %q is not a wildcard pattern (*_PASSWORD): %w", g, err)
		}
	}
	for i, o := range r.OutgoingAllow {
		cr, err := compileRule(o)
		if err != nil {
			return c, fmt.Errorf("outgoing.allow[%d]: %w", i, err)
		}
		c.allow = append(c.allow, cr)
	}
	for i, o := range r.OutgoingBlock {
		cr, err := compileRule(o)
		if err != nil {
			return c, fmt.Errorf("outgoing.block[%d]: %w", i, err)
		}
		c.deny = append(c.deny, cr)
	}
	return c, nil
}

// blocked is the first policy blocking feature f, as a refusal of what.
func (s *Set) blocked(f, what string) *Refusal {
	for _, p := range s.policies {
		if p.block[f] {
			return &Refusal{Policy: p.name, Rule: "block: " + f, What: what}
		}
	}
	return nil
}

// HTTPFilter is what Steal needs of a steal's HTTP filter: the header
// regexes a request must match to be stolen.
type HTTPFilter struct {
	// All are header regexes every stolen request matches (the filter's
	// header and those of its all_of).
	All []string
	// AnyOf are the headers of its any_of alternatives ("" for one that
	// has none): a stolen request matches one of them.
	AnyOf []string
	// Text is the filter as messages show it.
	Text string
}

// satisfies reports whether every request f steals carries a header that
// req's regex accepts: one of All does, or every alternative of AnyOf.
func (f *HTTPFilter) satisfies(req *regexp.Regexp) bool {
	for _, h := range f.All {
		if h != "" && req.MatchString(unanchored(h)) {
			return true
		}
	}
	if len(f.AnyOf) == 0 {
		return false
	}
	for _, h := range f.AnyOf {
		if h == "" || !req.MatchString(unanchored(h)) {
			return false
		}
	}
	return true
}

// unanchored is a header filter without its anchors: ^x-tether-user: me$
// names the header x-tether-user: me, which is what a requirement such as
// ^x-tether-user: .+$ is written against.
func unanchored(h string) string {
	h = strings.TrimPrefix(h, "(?i)")
	h = strings.TrimPrefix(h, "^")
	if strings.HasSuffix(h, "$") && !strings.HasSuffix(h, `\$`) {
		h = strings.TrimSuffix(h, "$")
	}
	return h
}

// Steal decides a steal of incoming traffic with HTTP filter f (nil: all
// of the port's traffic).
func (s *Set) Steal(f *HTTPFilter) *Refusal {
	if r := s.blocked(BlockIncoming, "taking incoming traffic"); r != nil {
		return r
	}
	if r := s.blocked(BlockSteal, "stealing incoming traffic"); r != nil {
		return r
	}
	if f == nil {
		if r := s.blocked(BlockStealWithoutFilter, "a steal without an HTTP filter"); r != nil {
			return r
		}
	}
	for _, p := range s.policies {
		if p.reqFilter == nil {
			continue
		}
		rule := "incoming.requireHeaderFilter: " + p.reqFilter.String()
		if f == nil {
			return &Refusal{Policy: p.name, Rule: rule, What: "a steal without an HTTP filter"}
		}
		if !f.satisfies(p.reqFilter) {
			return &Refusal{Policy: p.name, Rule: rule, What: fmt.Sprintf("a steal with HTTP filter %s (its header filter must match %s)", f.Text, p.reqFilter)}
		}
	}
	return nil
}

// LimitsOutgoing reports whether the set refuses any connection: when
// not, dials need no check.
func (s *Set) LimitsOutgoing() bool {
	for _, p := range s.policies {
		if p.block[BlockOutgoing] || len(p.allow) > 0 || len(p.deny) > 0 {
			return true
		}
	}
	return false
}

// Mirror decides mirroring incoming traffic.
func (s *Set) Mirror() *Refusal {
	if r := s.blocked(BlockIncoming, "taking incoming traffic"); r != nil {
		return r
	}
	return s.blocked(BlockMirror, "mirroring incoming traffic")
}

// QueueSplit decides splitting the target's queues.
func (s *Set) QueueSplit() *Refusal {
	return s.blocked(BlockQueueSplit, "splitting its queues")
}

// CopyTarget decides running on a copy of the target.
func (s *Set) CopyTarget() *Refusal {
	return s.blocked(BlockCopyTarget, "a copy of the target")
}
