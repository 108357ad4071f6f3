package session

import (
	"path"
	"sort"
	"strings"

	"github.com/tether-dev/tether/internal/config"
)

// builtinEnvExclude lists remote variables never taken by default: they
// describe the target's machine layout, shell or language install, and
// would break local programs (a remote PATH finds no binaries locally).
var builtinEnvExclude = []string{
	"PATH", "HOME", "SHELL", "TERM", "PWD", "OLDPWD", "USER", "LOGNAME", "HOSTNAME", "SHLVL", "_",
	"TMPDIR", "LD_*", "DYLD_*",
	"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
	"NODE_PATH", "NODE_OPTIONS", "NVM_*",
	"GOPATH", "GOROOT", "GOBIN", "GOFLAGS",
	"JAVA_HOME", "JAVA_TOOL_OPTIONS", "CLASSPATH",
	"RUBYLIB", "GEM_HOME", "GEM_PATH", "BUNDLE_*", "PERL5LIB",
	"CARGO_HOME", "RUSTUP_HOME", "DOTNET_ROOT",
	"DISPLAY", "XDG_*", "SSH_*", "LANG", "LANGUAGE", "LC_*",
}

// matchesAny reports whether name matches one of the patterns (* and ?
// wildcards, as in mirrord's env.include/exclude).
func matchesAny(name string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// splitEnv turns KEY=VALUE strings into a map and the order keys first appeared.
func splitEnv(env []string) (map[string]string, []string) {
	m := make(map[string]string, len(env))
	var order []string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if _, seen := m[k]; !seen {
			order = append(order, k)
		}
		m[k] = v
	}
	return m, order
}

// BuildEnv computes the command's environment: the local environment, then
// the target's variables (all but the built-in and configured excludes, or
// only the included ones), then env_file values, then overrides; unset
// names are removed last. fileVars is the parsed env_file (may be nil).
func BuildEnv(local, remote []string, cfg config.Env, enabled bool, fileVars map[string]string) []string {
	m, order := splitEnv(local)
	set := func(k, v string) {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	if enabled {
		rm, rorder := splitEnv(remote)
		for _, k := range rorder {
			take := false
			switch {
			case len(cfg.Include) > 0:
				take = matchesAny(k, cfg.Include)
			default:
				take = !matchesAny(k, builtinEnvExclude) && !matchesAny(k, cfg.Exclude)
			}
			if take {
				set(k, rm[k])
			}
		}
	}
	fileKeys := make([]string, 0, len(fileVars))
	for k := range fileVars {
		fileKeys = append(fileKeys, k)
	}
	sort.Strings(fileKeys)
	for _, k := range fileKeys {
		set(k, fileVars[k])
	}
	overKeys := make([]string, 0, len(cfg.Override))
	for k := range cfg.Override {
		overKeys = append(overKeys, k)
	}
	sort.Strings(overKeys)
	for _, k := range overKeys {
		set(k, cfg.Override[k])
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		if matchesAny(k, cfg.Unset) {
			continue
		}
		out = append(out, k+"="+m[k])
	}
	return out
}
