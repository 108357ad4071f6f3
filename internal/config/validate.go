package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
)

// Modes accepted by fs.mode and incoming.mode; the first is the default.
var (
	FSModes       = []string{"read", "write", "local"}
	IncomingModes = []string{"mirror", "steal", "off"}
	// ReplicaModes are incoming.replicas's values; the first is the default.
	ReplicaModes = []string{"all", "one"}
	// Transports are agent.transport's values; the first is the default.
	Transports = []string{"auto", "port-forward", "direct"}
)

// Validate checks what the types alone cannot: enums (fs.mode,
// incoming.mode), options that exclude each other (env include/exclude,
// outgoing and dns filter local/remote, incoming ports/ignore_ports, the
// http_filter styles), regexes (fs lists, http_filter), outgoing filter
// entries (see ParseOutgoingRule), dns filter entries, port numbers
// (1-65535), durations (not negative), agent.address (host:port) and
// env.env_file (exists and parses, see LoadEnvFile; a relative path is
// relative to the current directory).
//
// Each problem is an *Error with the key path, e.g.
//
//	"fs.read_only[0]": bad regex "(": missing closing ): `(` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)
//
// and several are joined with errors.Join. Load calls Validate and adds the
// file, line and column to each problem.
func (c *Config) Validate() error {
	return joinErrors(c.check())
}

type validator struct {
	errs []*Error
}

func (v *validator) addf(path string, format string, args ...any) {
	v.errs = append(v.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// conflict reports that the key at path cannot be set along with other.
func (v *validator) conflict(path, other, why string) {
	v.errs = append(v.errs, &Error{Path: path, onKey: true,
		Msg: fmt.Sprintf("cannot be used together with %q: %s", other, why)})
}

// check returns every problem Validate reports, unsorted and unjoined.
func (c *Config) check() []*Error {
	v := &validator{}
	c.checkTarget(v)
	c.checkAgent(v)
	c.checkEnv(v)
	c.checkFS(v)
	c.checkOutgoing(v)
	c.checkDNS(v)
	c.checkIncoming(v)
	c.checkSplitQueues(v)
	return v.errs
}

func (v *validator) enum(path, got string, allowed []string) {
	if got == "" || slices.Contains(allowed, got) {
		return
	}
	hint := ""
	if c := closest(got, allowed); c != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", c)
	}
	v.addf(path, "want %s, got %s%s", orList(allowed), quoteValue(got), hint)
}

// regex checks that re compiles; what names what it is matched against.
func (v *validator) regex(path, re, what string) {
	if re == "" {
		v.addf(path, "empty regex: it would match every %s; remove it", what)
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		msg := err.Error()
		var se *syntax.Error
		if errors.As(err, &se) {
			msg = strings.TrimPrefix(msg, "error parsing regexp: ")
		}
		v.addf(path, "bad regex %s: %s (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)", quoteValue(re), msg)
	}
}

func (v *validator) port(path string, p uint16) {
	if p == 0 {
		v.addf(path, "want %s, got 0", portWant)
	}
}

func (v *validator) ports(path string, ps []uint16) {
	for i, p := range ps {
		v.port(joinIndex(path, i), p)
	}
}

func (v *validator) duration(path string, d Duration) {
	if d < 0 {
		v.addf(path, "want a positive duration, got %s", d)
	}
}

// names checks a list of environment variable names (or patterns).
func (v *validator) names(path string, names []string) {
	for i, n := range names {
		switch {
		case strings.TrimSpace(n) == "":
			v.addf(joinIndex(path, i), "empty variable name; remove the entry")
		case strings.ContainsAny(n, "=\x00"):
			v.addf(joinIndex(path, i), "%s is not a variable name (no '=' allowed)", quoteValue(n))
		}
	}
}

func (c *Config) checkTarget(v *validator) {
	t := c.Target
	if t.Selector == "" {
		return
	}
	if t.Path != "" {
		v.conflict("target.selector", "target.path", "the selector picks the pods itself; remove one of the two")
	}
	if _, err := labels.Parse(t.Selector); err != nil {
		v.addf("target.selector", "not a label selector (%v): write it as kubectl -l takes it, e.g. app=web or app=web,tier!=db", err)
	}
}

func (c *Config) checkAgent(v *validator) {
	a := &c.Agent
	if a.Address != "" {
		host, port, err := net.SplitHostPort(a.Address)
		if err != nil || host == "" {
			v.addf("agent.address", "want HOST:PORT such as 10.0.0.5:7777, got %s", quoteValue(a.Address))
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			v.addf("agent.address", "bad port %s in %s: want %s", quoteValue(port), quoteValue(a.Address), portWant)
		}
	}
	v.enum("agent.transport", a.Transport, Transports)
	v.duration("agent.startup_timeout", a.StartupTimeout)
	v.duration("agent.linger", a.Linger)
	v.duration("agent.session_grace", a.SessionGrace)
	if a.MemoryLimit != "" {
		if q, err := resource.ParseQuantity(a.MemoryLimit); err != nil || q.Sign() <= 0 {
			v.addf("agent.memory_limit", "want a Kubernetes quantity such as \"128Mi\" or \"1Gi\", got %s", quoteValue(a.MemoryLimit))
		}
	}
}

func (c *Config) checkEnv(v *validator) {
	e := &c.Env
	if len(e.Include) > 0 && len(e.Exclude) > 0 {
		v.conflict("env.exclude", "env.include",
			"include already names the only variables to take; remove one of the two")
	}
	v.names("env.include", e.Include)
	v.names("env.exclude", e.Exclude)
	v.names("env.unset", e.Unset)
	for _, k := range slices.Sorted(maps.Keys(e.Override)) {
		path := joinKey("env.override", k)
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			v.addf(path, "%s is not a variable name (it must be non-empty, without '=')", quoteValue(k))
		case strings.IndexByte(e.Override[k], 0) >= 0:
			v.addf(path, "the value contains a NUL byte")
		}
	}
	if e.EnvFile != "" {
		if _, err := LoadEnvFile(e.EnvFile); err != nil {
			msg := err.Error()
			if errors.Is(err, fs.ErrNotExist) {
				msg += " (a relative path is relative to the current directory)"
			}
			v.addf("env.env_file", "%s", msg)
		}
	}
}

func (c *Config) checkFS(v *validator) {
	f := &c.FS
	v.enum("fs.mode", f.Mode, FSModes)
	for _, l := range []struct {
		name string
		res  []string
	}{{"read_only", f.ReadOnly}, {"read_write", f.ReadWrite}, {"local", f.Local}, {"not_found", f.NotFound}} {
		for i, re := range l.res {
			v.regex(joinIndex("fs."+l.name, i), re, "path")
		}
	}
}

func (c *Config) checkOutgoing(v *validator) {
	f := &c.Outgoing.Filter
	if len(f.Local) > 0 && len(f.Remote) > 0 {
		v.conflict("outgoing.filter.remote", "outgoing.filter.local",
			"list either the destinations that stay local or those that go remote, not both")
	}
	for _, l := range []struct {
		path    string
		entries []string
	}{{"outgoing.filter.local", f.Local}, {"outgoing.filter.remote", f.Remote}} {
		for i, e := range l.entries {
			if _, err := ParseOutgoingRule(e); err != nil {
				v.addf(joinIndex(l.path, i), "%v", err)
			}
		}
	}
}

// dnsSyntax describes dns.filter entries, for error messages.
const dnsSyntax = `a host name (".example.com" also matches subdomains) or "re:REGEX"`

func (c *Config) checkDNS(v *validator) {
	f := &c.DNS.Filter
	if len(f.Local) > 0 && len(f.Remote) > 0 {
		v.conflict("dns.filter.remote", "dns.filter.local",
			"list either the names resolved locally or those resolved remotely, not both")
	}
	for _, l := range []struct {
		path    string
		entries []string
	}{{"dns.filter.local", f.Local}, {"dns.filter.remote", f.Remote}} {
		for i, e := range l.entries {
			path := joinIndex(l.path, i)
			if re, ok := strings.CutPrefix(e, "re:"); ok {
				v.regex(path, re, "name")
				continue
			}
			if _, err := normalizeHost(strings.TrimPrefix(e, "."), false); err != nil {
				v.addf(path, "want %s, got %s", dnsSyntax, quoteValue(e))
			}
		}
	}
}

func (c *Config) checkIncoming(v *validator) {
	in := &c.Incoming
	v.enum("incoming.mode", in.Mode, IncomingModes)
	v.enum("incoming.replicas", in.Replicas, ReplicaModes)
	if len(in.Ports) > 0 && len(in.IgnorePorts) > 0 {
		v.conflict("incoming.ignore_ports", "incoming.ports",
			"ports already names the only ports to subscribe to; remove one of the two")
	}
	v.ports("incoming.ports", in.Ports)
	v.ports("incoming.ignore_ports", in.IgnorePorts)
	if r := in.MirrorRate; r != nil && *r < 0 {
		v.addf("incoming.mirror_rate", "%d requests per second is negative: give a bound (default %d), or 0 to copy every request", *r, DefaultMirrorRate)
	}
	for i, pm := range in.PortMapping {
		v.ports(joinIndex("incoming.port_mapping", i), pm[:])
	}
	for i, lp := range in.ListenPorts {
		v.ports(joinIndex("incoming.listen_ports", i), lp[:])
	}

	h := &in.HTTPFilter
	v.ports("incoming.http_filter.ports", h.Ports)
	var set []string
	for _, s := range []struct {
		key   string
		isSet bool
	}{
		{"header_filter", h.HeaderFilter != ""},
		{"path_filter", h.PathFilter != ""},
		{"method_filter", h.MethodFilter != ""},
		{"all_of", len(h.AllOf) > 0},
		{"any_of", len(h.AnyOf) > 0},
	} {
		if s.isSet {
			set = append(set, "incoming.http_filter."+s.key)
		}
	}
	for _, p := range set[min(1, len(set)):] {
		v.conflict(p, set[0], "set one filter; to combine conditions put them in all_of or any_of")
	}
	if h.HeaderFilter != "" {
		v.regex("incoming.http_filter.header_filter", h.HeaderFilter, "header")
	}
	if h.PathFilter != "" {
		v.regex("incoming.http_filter.path_filter", h.PathFilter, "path")
	}
	if h.MethodFilter != "" {
		v.regex("incoming.http_filter.method_filter", h.MethodFilter, "method")
	}
	for _, l := range []struct {
		path    string
		matches []HTTPMatch
	}{{"incoming.http_filter.all_of", h.AllOf}, {"incoming.http_filter.any_of", h.AnyOf}} {
		for i, m := range l.matches {
			path := joinIndex(l.path, i)
			n := 0
			for _, f := range []struct{ key, re, what string }{
				{"header", m.Header, "header"}, {"path", m.Path, "path"}, {"method", m.Method, "method"},
			} {
				if f.re != "" {
					n++
					v.regex(path+"."+f.key, f.re, f.what)
				}
			}
			if n != 1 {
				v.addf(path, "want exactly one of \"header\", \"path\" or \"method\", got %d; use one entry per condition", n)
			}
		}
	}
}

func (c *Config) checkSplitQueues(v *validator) {
	for _, id := range slices.Sorted(maps.Keys(c.SplitQueues)) {
		path := "split_queues." + id
		if strings.TrimSpace(id) == "" {
			v.addf("split_queues", "a queue ID is empty: use the IDs of the target's QueueSplit (kubectl get queuesplits -o yaml)")
			continue
		}
		f := c.SplitQueues[id].MessageFilter
		if len(f) == 0 {
			v.addf(path, "no message_filter: without one the session would take every message from the deployed workload; set message_filter: {HEADER: REGEX}")
			continue
		}
		for _, h := range slices.Sorted(maps.Keys(f)) {
			if strings.TrimSpace(h) == "" {
				v.addf(path+".message_filter", "an empty header name")
				continue
			}
			v.regex(path+".message_filter."+h, f[h], "header value")
		}
	}
}
