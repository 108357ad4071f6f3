package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "bad.env")
	if err := os.WriteFile(envFile, []byte("A=1\nnot a line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    Config
		want string // "" for valid
	}{
		{"zero", Config{}, ""},
		{"full", fullConfig, ""},
		{"fs mode", Config{FS: FS{Mode: "rw"}}, `"fs.mode": want "read", "write" or "local", got "rw"`},
		{"fs mode typo", Config{FS: FS{Mode: "locl"}}, `"fs.mode": want "read", "write" or "local", got "locl" (did you mean "local"?)`},
		{"incoming mode", Config{Incoming: Incoming{Mode: "Steal"}}, `"incoming.mode": want "mirror", "steal" or "off", got "Steal" (did you mean "steal"?)`},
		{"incoming replicas", Config{Incoming: Incoming{Replicas: "every"}}, `"incoming.replicas": want "all" or "one", got "every"`},
		{"negative mirror rate", Config{Incoming: Incoming{MirrorRate: ptr(-5)}}, `"incoming.mirror_rate": -5 requests per second is negative: give a bound (default 1000), or 0 to copy every request`},
		{"agent transport", Config{Agent: Agent{Transport: "portforward"}}, `"agent.transport": want "auto", "port-forward" or "direct", got "portforward" (did you mean "port-forward"?)`},
		{"target selector and path", Config{Target: Target{Path: "deployment/a", Selector: "app=a"}}, `"target.selector": cannot be used together with "target.path": the selector picks the pods itself; remove one of the two`},
		{"target bad selector", Config{Target: Target{Selector: "app in (a"}}, `"target.selector": not a label selector (unable to parse requirement: found '', expected: ',' or ')'): write it as kubectl -l takes it, e.g. app=web or app=web,tier!=db`},
		{"env include and exclude", Config{Env: Env{Include: []string{"A"}, Exclude: []string{"B"}}},
			`"env.exclude": cannot be used together with "env.include": include already names the only variables to take; remove one of the two`},
		{"outgoing local and remote", Config{Outgoing: Outgoing{Filter: OutgoingFilter{Local: []string{"a"}, Remote: []string{"b"}}}},
			`"outgoing.filter.remote": cannot be used together with "outgoing.filter.local": list either the destinations that stay local or those that go remote, not both`},
		{"dns local and remote", Config{DNS: DNS{Filter: DNSFilter{Local: []string{"a"}, Remote: []string{"b"}}}},
			`"dns.filter.remote": cannot be used together with "dns.filter.local": list either the names resolved locally or those resolved remotely, not both`},
		{"ports and ignore_ports", Config{Incoming: Incoming{Ports: []uint16{80}, IgnorePorts: []uint16{81}}},
			`"incoming.ignore_ports": cannot be used together with "incoming.ports": ports already names the only ports to subscribe to; remove one of the two`},
		{"fs regex", Config{FS: FS{NotFound: []string{"ok", "a[b"}}},
			"\"fs.not_found[1]\": bad regex \"a[b\": missing closing ]: `[b` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"empty fs regex", Config{FS: FS{Local: []string{""}}}, `"fs.local[0]": empty regex: it would match every path; remove it`},
		{"split queue", Config{SplitQueues: map[string]SplitQueue{"visits": {MessageFilter: map[string]string{"x-tether-user": "^me$"}}}}, ""},
		{"split queue bad regex", Config{SplitQueues: map[string]SplitQueue{"visits": {MessageFilter: map[string]string{"x-tether-user": "^(me"}}}},
			"\"split_queues.visits.message_filter.x-tether-user\": bad regex \"^(me\": missing closing ): `^(me` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"split queue no filter", Config{SplitQueues: map[string]SplitQueue{"visits": {}}},
			`"split_queues.visits": no message_filter: without one the session would take every message from the deployed workload; set message_filter: {HEADER: REGEX}`},
		{"http regex", Config{Incoming: Incoming{HTTPFilter: HTTPFilter{HeaderFilter: "x-a: (b"}}},
			"\"incoming.http_filter.header_filter\": bad regex \"x-a: (b\": missing closing ): `x-a: (b` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"http any_of regex", Config{Incoming: Incoming{HTTPFilter: HTTPFilter{AnyOf: []HTTPMatch{{Method: "*"}}}}},
			"\"incoming.http_filter.any_of[0].method\": bad regex \"*\": missing argument to repetition operator: `*` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"http match with two fields", Config{Incoming: Incoming{HTTPFilter: HTTPFilter{AllOf: []HTTPMatch{{Path: "a", Method: "b"}}}}},
			`"incoming.http_filter.all_of[0]": want exactly one of "header", "path" or "method", got 2; use one entry per condition`},
		{"two http filters", Config{Incoming: Incoming{HTTPFilter: HTTPFilter{PathFilter: "a", AnyOf: []HTTPMatch{{Path: "b"}}}}},
			`"incoming.http_filter.any_of": cannot be used together with "incoming.http_filter.path_filter": set one filter; to combine conditions put them in all_of or any_of`},
		{"outgoing entry", Config{Outgoing: Outgoing{Filter: OutgoingFilter{Local: []string{"10.0.0.0/8", "redis:0"}}}},
			`"outgoing.filter.local[1]": "redis:0": bad port "0": want a port number 1-65535`},
		{"dns entry", Config{DNS: DNS{Filter: DNSFilter{Remote: []string{"re:("}}}},
			"\"dns.filter.remote[0]\": bad regex \"(\": missing closing ): `(` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"port 0", Config{Incoming: Incoming{PortMapping: [][2]uint16{{8080, 0}}}}, `"incoming.port_mapping[0][1]": want a port number 1-65535, got 0`},
		{"listen port 0", Config{Incoming: Incoming{ListenPorts: [][2]uint16{{0, 1}}}}, `"incoming.listen_ports[0][0]": want a port number 1-65535, got 0`},
		{"http port 0", Config{Incoming: Incoming{HTTPFilter: HTTPFilter{Ports: []uint16{0}}}}, `"incoming.http_filter.ports[0]": want a port number 1-65535, got 0`},
		{"negative duration", Config{Agent: Agent{Linger: Duration(-time.Second)}}, `"agent.linger": want a positive duration, got -1s`},
		{"agent address", Config{Agent: Agent{Address: "agent"}}, `"agent.address": want HOST:PORT such as 10.0.0.5:7777, got "agent"`},
		{"agent port", Config{Agent: Agent{Address: "agent:http"}}, `"agent.address": bad port "http" in "agent:http": want a port number 1-65535`},
		{"override name", Config{Env: Env{Override: map[string]string{"A=B": "x"}}}, `"env.override[\"A=B\"]": "A=B" is not a variable name (it must be non-empty, without '=')`},
		{"empty include", Config{Env: Env{Include: []string{" "}}}, `"env.include[0]": empty variable name; remove the entry`},
		{"missing env file", Config{Env: Env{EnvFile: "/nonexistent/dev.env"}},
			`"env.env_file": read env file: open /nonexistent/dev.env: no such file or directory (a relative path is relative to the current directory)`},
		{"bad env file", Config{Env: Env{EnvFile: envFile}},
			`"env.env_file": ` + envFile + `:2: want KEY=VALUE, got "not a line" (names are letters, digits, '_', '.' and '-', not starting with a digit)`},
		{"env file is a directory", Config{Env: Env{EnvFile: os.TempDir()}},
			`"env.env_file": read env file: ` + os.TempDir() + ` is not a regular file`},
		{"several", Config{FS: FS{Mode: "x"}, Incoming: Incoming{Mode: "y"}},
			"\"fs.mode\": want \"read\", \"write\" or \"local\", got \"x\"\n\"incoming.mode\": want \"mirror\", \"steal\" or \"off\", got \"y\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate():\n got: %s\nwant: %s", got, tc.want)
			}
			var e *Error
			if err != nil && !errors.As(err, &e) {
				t.Errorf("error is a %T, not an *Error", err)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	var zero Config
	if !zero.HostnameEnabled() || !zero.EnvEnabled() || !zero.OutgoingTCP() || !zero.OutgoingUDP() ||
		!zero.IgnoreLocalhost() || !zero.DNSEnabled() {
		t.Error("boolean defaults are not all true")
	}
	if zero.FSMode() != "read" || zero.IncomingMode() != "mirror" {
		t.Errorf("FSMode, IncomingMode = %q, %q", zero.FSMode(), zero.IncomingMode())
	}
	if zero.AgentStartupTimeout() != 60*time.Second || zero.AgentLinger() != 30*time.Second {
		t.Errorf("AgentStartupTimeout, AgentLinger = %v, %v", zero.AgentStartupTimeout(), zero.AgentLinger())
	}

	c := fullConfig
	c.Incoming.Mode = "off"
	if c.HostnameEnabled() || !c.EnvEnabled() || !c.OutgoingTCP() || c.OutgoingUDP() ||
		c.IgnoreLocalhost() || !c.DNSEnabled() {
		t.Error("booleans set in the config are not reported")
	}
	if c.FSMode() != "write" || c.IncomingMode() != "off" {
		t.Errorf("FSMode, IncomingMode = %q, %q", c.FSMode(), c.IncomingMode())
	}
	if c.AgentStartupTimeout() != 2*time.Minute || c.AgentLinger() != 45*time.Second {
		t.Errorf("AgentStartupTimeout, AgentLinger = %v, %v", c.AgentStartupTimeout(), c.AgentLinger())
	}
	f := false
	c.Env.Enabled, c.DNS.Enabled, c.Outgoing.TCP = &f, &f, &f
	if c.EnvEnabled() || c.DNSEnabled() || c.OutgoingTCP() {
		t.Error("false not reported")
	}
}

func TestLoadValidatesEnvFile(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "dev.env")
	if err := os.WriteFile(env, []byte("A='unterminated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("env:\n  env_file: "+env+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(cfg)
	want := cfg + `:2:13: "env.env_file": ` + env + `:1: missing closing ' quote`
	if err == nil || err.Error() != want {
		t.Errorf("got: %v\nwant: %s", err, want)
	}
}
