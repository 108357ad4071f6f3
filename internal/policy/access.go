package policy

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"
)

// FSMode is where a session's open of a path goes, as policies say.
type FSMode int

const (
	// FSAsConfigured: no policy says; the user's config decides.
	FSAsConfigured FSMode = iota
	// FSReadOnly: the target's file, never for writing (EROFS).
	FSReadOnly
	// FSLocal: the developer's machine's file, never the target's.
	FSLocal
	// FSNotFound: it does not exist for the session (ENOENT).
	FSNotFound
)

// File says how policies treat path (absolute): not found beats local,
// which beats read-only. The refusal names the rule.
func (s *Set) File(p string) (FSMode, *Refusal) {
	for _, m := range []struct {
		mode  FSMode
		field string
		res   func(c *compiled) []*regexp.Regexp
	}{
		{FSNotFound, "fs.notFound", func(c *compiled) []*regexp.Regexp { return c.notFound }},
		{FSLocal, "fs.local", func(c *compiled) []*regexp.Regexp { return c.local }},
		{FSReadOnly, "fs.readOnly", func(c *compiled) []*regexp.Regexp { return c.readOnly }},
	} {
		for i := range s.policies {
			for _, re := range m.res(&s.policies[i]) {
				if re.MatchString(p) {
					return m.mode, &Refusal{Policy: s.policies[i].name, Rule: m.field + ": " + re.String(), What: "the target's " + p}
				}
			}
		}
	}
	return FSAsConfigured, nil
}

// Write decides opening path of the target for writing (creating,
// truncating, removing, renaming too): refused by block fs-write or by
// fs.readOnly.
func (s *Set) Write(p string) *Refusal {
	if r := s.blocked(BlockFSWrite, "writing the target's "+p); r != nil {
		return r
	}
	if mode, r := s.File(p); mode == FSReadOnly {
		r.What = "writing the target's " + p
		return r
	}
	return nil
}

// EnvMode is what a session gets of one of the target's variables.
type EnvMode int

const (
	// EnvAsConfigured: no policy says; the user's config decides.
	EnvAsConfigured EnvMode = iota
	// EnvExcluded: the session never gets it.
	EnvExcluded
	// EnvMasked: the session gets it as Masked.
	EnvMasked
)

// Masked is a masked variable's value.
const Masked = "********"

// Env says how policies treat variable name: exclude beats mask, and both
// beat the user's config.
func (s *Set) Env(name string) (EnvMode, *Refusal) {
	for _, m := range []struct {
		mode  EnvMode
		field string
		globs func(r *Rules) []string
	}{
		{EnvExcluded, "env.exclude", func(r *Rules) []string { return r.EnvExclude }},
		{EnvMasked, "env.mask", func(r *Rules) []string { return r.EnvMask }},
	} {
		for i := range s.policies {
			p := &s.policies[i]
			for _, g := range m.globs(&p.rules) {
				if ok, _ := path.Match(g, name); ok {
					return m.mode, &Refusal{Policy: p.name, Rule: m.field + ": " + g, What: "variable " + name}
				}
			}
		}
	}
	return EnvAsConfigured, nil
}

// rule is an OutgoingRule, compiled.
type rule struct {
	text   string
	prefix netip.Prefix // !IsValid: any address
	except []netip.Prefix
	host   *regexp.Regexp
	port   uint16
	proto  string
}

func compileRule(r OutgoingRule) (rule, error) {
	c := rule{port: uint16(r.Port), proto: r.Protocol}
	var parts []string
	if r.CIDR != "" {
		p, err := parsePrefix(r.CIDR)
		if err != nil {
			return c, err
		}
		c.prefix = p
		parts = append(parts, p.String())
	}
	for _, e := range r.Except {
		p, err := parsePrefix(e)
		if err != nil {
			return c, fmt.Errorf("except: %w", err)
		}
		c.except = append(c.except, p)
	}
	if len(c.except) > 0 {
		parts = append(parts, "except "+strings.Join(r.Except, ","))
	}
	if r.Hostname != "" {
		re, err := regexp.Compile(r.Hostname)
		if err != nil {
			return c, fmt.Errorf("hostname: %w", err)
		}
		c.host = re
		parts = append(parts, "hostname "+r.Hostname)
	}
	if r.Port < 0 || r.Port > 65535 {
		return c, fmt.Errorf("port %d is not a port", r.Port)
	}
	if r.Port != 0 {
		parts = append(parts, fmt.Sprintf("port %d", r.Port))
	}
	switch r.Protocol {
	case "", "tcp", "udp":
	default:
		return c, fmt.Errorf("protocol %q: want tcp, udp or nothing (both)", r.Protocol)
	}
	if r.Protocol != "" {
		parts = append(parts, r.Protocol)
	}
	if len(parts) == 0 {
		parts = append(parts, "everything")
	}
	c.text = strings.Join(parts, " ")
	return c, nil
}

// parsePrefix takes a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8) or an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (r rule) matches(dst netip.Addr, port uint16, proto string, names []string) bool {
	dst = dst.Unmap()
	if r.prefix.IsValid() && !r.prefix.Contains(dst) {
		return false
	}
	for _, e := range r.except {
		if e.Contains(dst) {
			return false
		}
	}
	if r.port != 0 && r.port != port {
		return false
	}
	if r.proto != "" && r.proto != proto {
		return false
	}
	if r.host != nil {
		for _, n := range names {
			if r.host.MatchString(strings.TrimSuffix(n, ".")) {
				return true
			}
		}
		return false
	}
	return true
}

// Outgoing decides a connection (proto tcp, or a udp flow) from the
// target's network to dst:port; names are the names the target's pod
// resolved to dst (for hostname rules). Block outgoing refuses all; a
// block rule beats every allow rule; with allow rules in a policy,
// only what one of them allows passes that policy.
func (s *Set) Outgoing(dst netip.Addr, port uint16, proto string, names []string) *Refusal {
	what := fmt.Sprintf("a %s connection to %s", proto, netip.AddrPortFrom(dst.Unmap(), port))
	if len(names) > 0 {
		what += " (" + strings.Join(names, ", ") + ")"
	}
	if r := s.blocked(BlockOutgoing, what); r != nil {
		return r
	}
	for _, p := range s.policies {
		for _, r := range p.deny {
			if r.matches(dst, port, proto, names) {
				return &Refusal{Policy: p.name, Rule: "outgoing.block: " + r.text, What: what}
			}
		}
	}
	for _, p := range s.policies {
		if len(p.allow) == 0 {
			continue
		}
		allowed := false
		for _, r := range p.allow {
			if r.matches(dst, port, proto, names) {
				allowed = true
				break
			}
		}
		if !allowed {
			return &Refusal{Policy: p.name, Rule: "outgoing.allow: no rule allows it", What: what}
		}
	}
	return nil
}
