package session

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/layer"
	"github.com/tether-dev/tether/internal/policy"
)

// builtinLocalDirs stay local in every fs mode (unless a user list says
// otherwise): the machine's own system, devices and scratch space. They
// are checked as path prefixes, not regexes: this runs on every trapped
// open and stat.
var builtinLocalDirs = []string{
	"/proc", "/sys", "/dev", "/run", "/var/run", "/tmp", "/var/tmp",
	"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/opt",
	"/home", "/root", "/nix", "/snap", "/var/lib/dpkg", "/var/lib/apt",
}

// builtinLocalSuffixes are code files the developer runs locally wherever
// they are (a remote copy would shadow the code being worked on).
var builtinLocalSuffixes = []string{".py", ".pyc", ".js", ".mjs", ".cjs", ".jar", ".class", ".so"}

// builtinLocal reports whether p is on the built-in local list.
func builtinLocal(p string) bool {
	for _, d := range builtinLocalDirs {
		if underDir(p, d) {
			return true
		}
	}
	// node_modules is the developer's install. A .git is not on the list: a
	// repository checked out in the pod is the pod's (git status there must
	// see it), and the developer's own is under the working directory.
	if strings.Contains(p+"/", "/node_modules/") {
		return true
	}
	base := p[strings.LastIndexByte(p, '/')+1:]
	for _, suf := range builtinLocalSuffixes {
		if strings.HasSuffix(base, suf) {
			return true
		}
	}
	// Versioned shared libraries: libfoo.so.1.2
	if i := strings.Index(base, ".so."); i > 0 {
		rest := base[i+4:]
		return rest != "" && strings.Trim(rest, "0123456789.") == ""
	}
	return false
}

// underDir reports whether p is dir or inside it.
func underDir(p, dir string) bool {
	return p == dir || (len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir)
}

// fsRouter decides where each path is served from.
type fsRouter struct {
	mode                                 string // local, read, write
	notFound, local, readOnly, readWrite []*regexp.Regexp
	localDirs                            []string // cwd, home, executable dir: local with their ancestors
}

func compileAll(key string, exprs []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(exprs))
	for i, e := range exprs {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		out = append(out, re)
	}
	return out, nil
}

// withPolicies adds the policies' fs rules to the user's (they come
// first, so they win) and, when a policy blocks fs-write, makes the
// target's files read-only. The agent enforces them anyway: this keeps
// fs.local paths on this machine and makes a refused write fail at its
// open, not at its close.
func withPolicies(fs config.FS, mode string, rules []policy.Rules) (config.FS, string) {
	for _, r := range rules {
		fs.NotFound = append(slices.Clone(r.FSNotFound), fs.NotFound...)
		fs.Local = append(slices.Clone(r.FSLocal), fs.Local...)
		fs.ReadOnly = append(slices.Clone(r.FSReadOnly), fs.ReadOnly...)
		if slices.Contains(r.Block, policy.BlockFSWrite) {
			fs.ReadOnly = append(fs.ReadOnly, fs.ReadWrite...)
			fs.ReadWrite = nil
			if mode == "write" {
				mode = "read"
			}
		}
	}
	return fs, mode
}

func newFSRouter(cfg config.FS, mode string, localDirs []string) (*fsRouter, error) {
	r := &fsRouter{mode: mode}
	var err error
	if r.notFound, err = compileAll("fs.not_found", cfg.NotFound); err != nil {
		return nil, err
	}
	if r.local, err = compileAll("fs.local", cfg.Local); err != nil {
		return nil, err
	}
	if r.readOnly, err = compileAll("fs.read_only", cfg.ReadOnly); err != nil {
		return nil, err
	}
	if r.readWrite, err = compileAll("fs.read_write", cfg.ReadWrite); err != nil {
		return nil, err
	}
	for _, d := range localDirs {
		if d != "" && d != "/" {
			r.localDirs = append(r.localDirs, path.Clean(d))
		}
	}
	return r, nil
}

func anyMatch(res []*regexp.Regexp, p string) bool {
	for _, re := range res {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

// route: user lists first (not_found, local, read_only, read_write), then
// the built-in local list and the developer's own directories, then the mode.
func (r *fsRouter) route(p string) layer.Route {
	switch {
	case anyMatch(r.notFound, p):
		return layer.NotFound
	case anyMatch(r.local, p):
		return layer.Local
	case anyMatch(r.readOnly, p):
		return layer.RemoteRead
	case anyMatch(r.readWrite, p):
		return layer.RemoteWrite
	}
	if p == "/" || r.mode == "local" || builtinLocal(p) {
		return layer.Local
	}
	for _, d := range r.localDirs {
		// Under a local dir, or one of its ancestors (realpath and getcwd
		// walk them).
		if underDir(p, d) || underDir(d, p) {
			return layer.Local
		}
	}
	if r.mode == "write" {
		return layer.RemoteWrite
	}
	return layer.RemoteRead
}

// nameFilter matches DNS names against dns.filter entries: "name" exact,
// ".suffix" or "*.suffix" for subdomains, "re:EXPR" a regex.
type nameFilter struct {
	exact    map[string]bool
	suffixes []string
	res      []*regexp.Regexp
}

func newNameFilter(key string, entries []string) (*nameFilter, error) {
	f := &nameFilter{exact: map[string]bool{}}
	for i, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case strings.HasPrefix(e, "re:"):
			re, err := regexp.Compile(e[3:])
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
			}
			f.res = append(f.res, re)
		case strings.HasPrefix(e, "*."):
			f.suffixes = append(f.suffixes, strings.TrimSuffix(e[1:], "."))
		case strings.HasPrefix(e, "."):
			f.suffixes = append(f.suffixes, strings.TrimSuffix(e, "."))
		case e != "":
			f.exact[strings.TrimSuffix(e, ".")] = true
		}
	}
	return f, nil
}

func (f *nameFilter) empty() bool {
	return f == nil || (len(f.exact) == 0 && len(f.suffixes) == 0 && len(f.res) == 0)
}

func (f *nameFilter) match(name string) bool {
	if f == nil {
		return false
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if f.exact[name] {
		return true
	}
	for _, s := range f.suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	for _, re := range f.res {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// outgoingPolicy decides whether a destination goes through the target.
type outgoingPolicy struct {
	tcp, udp        bool
	ignoreLocalhost bool
	local, remote   []config.OutgoingRule
	hostsOf         func(netip.Addr) []string // names that resolved to an address
}

func (o *outgoingPolicy) remoteFor(network string, dst netip.AddrPort) bool {
	if (network == "tcp" && !o.tcp) || (network == "udp" && !o.udp) {
		return false
	}
	addr := dst.Addr().Unmap()
	if addr.IsLoopback() && o.ignoreLocalhost {
		return false
	}
	match := func(rules []config.OutgoingRule) bool {
		var hosts []string
		if o.hostsOf != nil {
			hosts = o.hostsOf(addr)
		}
		for _, r := range rules {
			if r.Match(network, "", addr, dst.Port()) {
				return true
			}
			for _, h := range hosts {
				if r.Match(network, h, addr, dst.Port()) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case len(o.remote) > 0:
		return match(o.remote)
	case len(o.local) > 0:
		return !match(o.local)
	}
	return true
}
