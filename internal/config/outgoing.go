package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// OutgoingRule is one parsed entry of outgoing.filter.local or
// outgoing.filter.remote. See ParseOutgoingRule for the syntax.
type OutgoingRule struct {
	// Proto is "" (any), "tcp" or "udp".
	Proto string
	// Host is a lower-case host name without a trailing dot, "*.domain" for
	// any subdomain of domain, or "" when the rule is not about a name.
	Host string
	// Prefix is valid when the rule names an IP address (a /32 or /128) or a
	// CIDR range. IPv4-mapped IPv6 addresses are stored as IPv4.
	Prefix netip.Prefix
	// Port is the destination port; 0 means any port.
	Port uint16
}

// ParseOutgoingFilter parses the entries of outgoing.filter.local or
// outgoing.filter.remote (see ParseOutgoingRule). The error names the first
// bad entry by index.
func ParseOutgoingFilter(entries []string) ([]OutgoingRule, error) {
	rules := make([]OutgoingRule, 0, len(entries))
	for i, e := range entries {
		r, err := ParseOutgoingRule(e)
		if err != nil {
			return nil, fmt.Errorf("outgoing filter entry %d: %w", i, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// outgoingSyntax is the entry syntax, for error messages.
const outgoingSyntax = "[tcp://|udp://][host|*.domain|ip|cidr][:port]"

// ParseOutgoingRule parses one outgoing filter entry:
//
//	[tcp://|udp://][host|*.domain|ip|cidr][:port]
//
// All parts are optional, but an entry cannot be empty. Examples:
//
//	10.0.0.0/8             any port of a CIDR range
//	redis:6379             a host name and port
//	*.svc.cluster.local    any subdomain of svc.cluster.local, any port
//	udp://1.2.3.4:53       UDP only
//	:53                    port 53 of any address
//	tcp://                 all TCP
//	[fd00::1]:443          IPv6 with a port needs brackets
//	fd00::/8               IPv6 without a port may go bare
//
// "*" alone stands for any address ("*:53" is ":53"). Host names are
// matched case-insensitively and without a trailing dot; "*.domain" matches
// subdomains of domain but not domain itself.
func ParseOutgoingRule(entry string) (OutgoingRule, error) {
	var r OutgoingRule
	s := strings.TrimSpace(entry)
	if s == "" {
		return r, fmt.Errorf("empty entry: want %s", outgoingSyntax)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		switch p := strings.ToLower(s[:i]); p {
		case "tcp", "udp":
			r.Proto = p
		default:
			return r, fmt.Errorf("%q: unknown protocol %q: use tcp:// or udp://, or no prefix for both", entry, s[:i])
		}
		s = s[i+3:]
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return r, fmt.Errorf("%q: %w", entry, err)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return r, fmt.Errorf("%q: bad port %q: want a port number 1-65535", entry, port)
		}
		r.Port = uint16(n)
	}
	switch {
	case host == "" || host == "*":
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return r, fmt.Errorf("%q: bad CIDR range %q: want an address/bits such as 10.0.0.0/8", entry, host)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.Prefix = p.Masked()
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			if a.Zone() != "" {
				return r, fmt.Errorf("%q: IPv6 zones (%%%s) are not supported", entry, a.Zone())
			}
			a = a.Unmap()
			r.Prefix = netip.PrefixFrom(a, a.BitLen())
			break
		}
		h, err := normalizeHost(host, true)
		if err != nil {
			if host != strings.TrimSpace(entry) {
				return r, fmt.Errorf("%q: host %q: %w", entry, host, err)
			}
			return r, fmt.Errorf("%q: %w", entry, err)
		}
		r.Host = h
	}
	return r, nil
}

// splitHostPort splits "host:port", "[v6]:port", "host", ":port" and a bare
// IPv6 address or range (no port).
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("missing ] after IPv6 address")
		}
		host, rest := s[1:end], s[end+1:]
		if _, err := netip.ParseAddr(host); err != nil {
			if _, err := netip.ParsePrefix(host); err != nil {
				return "", "", fmt.Errorf("%q in brackets is not an IP address", host)
			}
		}
		if rest == "" {
			return host, "", nil
		}
		if rest[0] != ':' || len(rest) == 1 {
			return "", "", fmt.Errorf("want :PORT after ], got %q", rest)
		}
		return host, rest[1:], nil
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", nil
	case 1:
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return "", "", errors.New("missing port after ':'")
		}
		return host, port, nil
	default: // a bare IPv6 address or range
		if _, err := netip.ParseAddr(s); err != nil {
			if _, err := netip.ParsePrefix(s); err != nil {
				return "", "", fmt.Errorf("%q is not an IPv6 address or range (write [ADDRESS]:PORT for one with a port)", s)
			}
		}
		return s, "", nil
	}
}

// normalizeHost checks a host name and returns it lower-cased without a
// trailing dot. With wildcard, a leading "*." is allowed.
func normalizeHost(host string, wildcard bool) (string, error) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	name := h
	if wildcard && strings.HasPrefix(name, "*.") {
		name = name[2:]
	}
	if name == "" || len(name) > 253 {
		return "", errors.New("not a host name")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", errors.New("not a host name (empty or overlong label)")
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				if c == '*' {
					return "", errors.New(`a wildcard is only allowed as a leading "*."`)
				}
				return "", fmt.Errorf("not a host name (bad character %q)", c)
			}
		}
	}
	if isDigits(labels[len(labels)-1]) {
		return "", errors.New("neither an IP address nor a host name")
	}
	return h, nil
}

// Match reports whether a connection matches the rule. proto is "tcp" or
// "udp"; host is the name the destination was resolved from, or "" when only
// the address is known; addr is the destination address (may be invalid when
// only the name is known); port is the destination port.
//
// A rule with a Prefix matches addresses in it; a rule with a Host matches
// the same name or, for "*.domain", any subdomain of domain; a rule with
// neither matches any destination. Proto and Port, when set, must match too.
func (r OutgoingRule) Match(proto string, host string, addr netip.Addr, port uint16) bool {
	if r.Proto != "" && !strings.EqualFold(proto, r.Proto) {
		return false
	}
	if r.Port != 0 && port != r.Port {
		return false
	}
	switch {
	case r.Prefix.IsValid():
		if !addr.IsValid() {
			return false
		}
		addr = addr.WithZone("")
		return r.Prefix.Contains(addr) || r.Prefix.Contains(addr.Unmap())
	case r.Host != "":
		return hostMatches(r.Host, host)
	default:
		return true
	}
}

// hostMatches matches a host name against a rule host ("name" or "*.domain").
func hostMatches(rule, host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(rule, "*"); ok {
		return len(h) > len(suffix) && strings.HasSuffix(h, suffix)
	}
	return h == rule
}

// String renders the rule in the entry syntax, e.g. "udp://10.0.0.0/8:53".
func (r OutgoingRule) String() string {
	var b strings.Builder
	if r.Proto != "" {
		b.WriteString(r.Proto + "://")
	}
	switch {
	case r.Prefix.IsValid():
		a := r.Prefix.Addr()
		s := a.String()
		if r.Prefix.Bits() != a.BitLen() {
			s = r.Prefix.String()
		}
		if a.Is6() && r.Port != 0 {
			s = "[" + s + "]"
		}
		b.WriteString(s)
	case r.Host != "":
		b.WriteString(r.Host)
	}
	if r.Port != 0 {
		b.WriteString(":" + strconv.Itoa(int(r.Port)))
	}
	if b.Len() == 0 {
		return "*"
	}
	return b.String()
}
