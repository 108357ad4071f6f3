package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// fullConfig is what every testdata/good/full.* file holds.
var fullConfig = Config{
	Target:      Target{Path: "deployment/api"},
	Namespace:   "staging",
	FollowOwner: true,
	Hostname:    ptr(false),
	Agent: Agent{
		Address:        "10.0.0.5:7777",
		Image:          "ghcr.io/tether-dev/agent:1.0",
		StartupTimeout: Duration(2 * time.Minute),
		Linger:         Duration(45 * time.Second),
	},
	Env: Env{
		Enabled:  ptr(true),
		Exclude:  []string{"AWS_*", "SECRET_?"},
		Override: map[string]string{"LOG_LEVEL": "debug", "EMPTY": ""},
		Unset:    []string{"HTTP_PROXY"},
		EnvFile:  "testdata/good/dev.env",
	},
	FS: FS{
		Mode:      "write",
		ReadOnly:  []string{"^/etc/"},
		ReadWrite: []string{"^/tmp/.*"},
		Local:     []string{`\.sock$`},
		NotFound:  []string{"^/var/run/secrets/"},
	},
	Outgoing: Outgoing{
		TCP:             ptr(true),
		UDP:             ptr(false),
		IgnoreLocalhost: ptr(false),
		Filter: OutgoingFilter{
			Remote: []string{"10.0.0.0/8", "redis:6379", "udp://1.2.3.4:53", ":53", "*.svc.cluster.local"},
		},
	},
	DNS: DNS{
		Enabled: ptr(true),
		Filter:  DNSFilter{Local: []string{".example.com", "localhost", `re:^db[0-9]+\.internal$`}},
	},
	Incoming: Incoming{
		Mode: "steal",
		HTTPFilter: HTTPFilter{
			AllOf: []HTTPMatch{{Header: "^x-user: alice$"}, {Path: "^/api/"}},
			Ports: []uint16{80, 8080},
		},
		IgnorePorts: []uint16{9090},
		PortMapping: [][2]uint16{{8081, 80}},
		ListenPorts: [][2]uint16{{80, 8080}},
	},
}

func TestLoadGood(t *testing.T) {
	for _, name := range []string{"full.yaml", "full.json", "full.toml"} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", "good", name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*c, fullConfig) {
				t.Errorf("Load(%s) =\n%+v\nwant\n%+v", name, *c, fullConfig)
			}
		})
	}
}

func TestLoadMinimal(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"empty.yaml", ""},
		{"comment.yml", "# nothing set\n"},
		{"null.yaml", "fs:\nenv: ~\n"},
		{"empty.toml", ""},
		{"empty.json", "{}"},
		{"null.json", `{"fs": null, "hostname": null}`},
		{"bom.json", "\xEF\xBB\xBF{}"},
		{"upper.JSON", "{}"},
	} {
		c, err := Parse(tc.name, []byte(tc.data))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(*c, Config{}) {
			t.Errorf("%s: got %+v, want the zero Config", tc.name, *c)
		}
	}
}

// TestLoadBad checks the exact message, position and key path for the files
// in testdata/bad, in all three formats.
func TestLoadBad(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string
	}{
		// unknown key at the top level
		{"unknown_top.yaml", `testdata/bad/unknown_top.yaml:2:1: unknown key "hostnmae" (did you mean "hostname"?)`},
		{"unknown_top.json", `testdata/bad/unknown_top.json:3:3: unknown key "hostnmae" (did you mean "hostname"?)`},
		{"unknown_top.toml", `testdata/bad/unknown_top.toml:2:1: unknown key "hostnmae" (did you mean "hostname"?)`},
		// unknown key deep down, inside a list
		{"unknown_nested.yaml", `testdata/bad/unknown_nested.yaml:8:9: unknown key "incoming.http_filter.any_of[1].hedaer" (did you mean "incoming.http_filter.any_of[1].header"?)`},
		{"unknown_nested.json", `testdata/bad/unknown_nested.json:7:10: unknown key "incoming.http_filter.any_of[1].hedaer" (did you mean "incoming.http_filter.any_of[1].header"?)`},
		{"unknown_nested.toml", `testdata/bad/unknown_nested.toml:9:1: unknown key "incoming.http_filter.any_of[1].hedaer" (did you mean "incoming.http_filter.any_of[1].header"?)`},
		// wrong type
		{"wrong_type.yaml", `testdata/bad/wrong_type.yaml:3:15: "incoming.ports[1]": want a port number 1-65535, got "abc"`},
		{"wrong_type.json", `testdata/bad/wrong_type.json:3:19: "incoming.ports[1]": want a port number 1-65535, got "abc"`},
		{"wrong_type.toml", `testdata/bad/wrong_type.toml:3:14: "incoming.ports[1]": want a port number 1-65535, got "abc"`},
		// bad regex
		{"bad_regex.yaml", "testdata/bad/bad_regex.yaml:5:7: \"fs.read_only[1]\": bad regex \"^/var/(log\": missing closing ): `^/var/(log` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"bad_regex.json", "testdata/bad/bad_regex.json:4:29: \"fs.read_only[1]\": bad regex \"^/var/(log\": missing closing ): `^/var/(log` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"bad_split_regex.yaml", "testdata/bad/bad_split_regex.yaml:5:22: \"split_queues.visits.message_filter.x-tether-user\": bad regex \"^(me\": missing closing ): `^(me` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		{"unknown_split_key.yaml", `testdata/bad/unknown_split_key.yaml:3:5: unknown key "split_queues.visits.message_filtre" (did you mean "split_queues.visits.message_filter"?)`},
		{"bad_regex.toml", "testdata/bad/bad_regex.toml:5:3: \"fs.read_only[1]\": bad regex \"^/var/(log\": missing closing ): `^/var/(log` (Go RE2 syntax: https://pkg.go.dev/regexp/syntax)"},
		// bad enum
		{"bad_enum.yaml", `testdata/bad/bad_enum.yaml:2:9: "fs.mode": want "read", "write" or "local", got "wirte" (did you mean "write"?)`},
		{"bad_enum.json", `testdata/bad/bad_enum.json:1:17: "fs.mode": want "read", "write" or "local", got "wirte" (did you mean "write"?)`},
		{"bad_enum.toml", `testdata/bad/bad_enum.toml:2:8: "fs.mode": want "read", "write" or "local", got "wirte" (did you mean "write"?)`},
		// conflicting options: points at the second key
		{"conflict.yaml", `testdata/bad/conflict.yaml:3:3: "env.exclude": cannot be used together with "env.include": include already names the only variables to take; remove one of the two`},
		{"conflict.json", `testdata/bad/conflict.json:4:5: "env.exclude": cannot be used together with "env.include": include already names the only variables to take; remove one of the two`},
		{"conflict.toml", `testdata/bad/conflict.toml:3:1: "env.exclude": cannot be used together with "env.include": include already names the only variables to take; remove one of the two`},
		// syntax errors
		{"syntax.yaml", `testdata/bad/syntax.yaml:3: YAML syntax error: mapping values are not allowed in this context (check the indentation of this line, and quote values that contain ": ")`},
		{"syntax.json", `testdata/bad/syntax.json:4:3: JSON syntax error: invalid character '}' looking for beginning of object key string (remove the trailing comma)`},
		{"syntax.toml", `testdata/bad/syntax.toml:2:13: TOML syntax error: basic strings cannot have new lines`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := Load("testdata/bad/" + tc.file)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is a %T, not an *Error", err)
			}
			if e.File != "testdata/bad/"+tc.file || e.Line == 0 {
				t.Errorf("File, Line = %q, %d", e.File, e.Line)
			}
		})
	}
}

// TestParse covers messages and hints on small inline documents.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       string // "" for success
	}{
		// Types and hints.
		{"t.yaml", "namespace: 2024\n", `t.yaml:1:12: "namespace": want a string, got 2024 (quote it: "2024")`},
		{"t.yaml", "hostname: 'true'\n", `t.yaml:1:11: "hostname": want true or false, got "true" (remove the quotes)`},
		{"t.yaml", "hostname: yes\n", `t.yaml:1:11: "hostname": want true or false, got "yes"`},
		{"t.yaml", "incoming:\n  ports: 80\n", `t.yaml:2:10: "incoming.ports": want a list of port numbers, got 80 (write a list even for one value: [80])`},
		{"t.json", `{"incoming": {"ports": [70000]}}`, `t.json:1:25: "incoming.ports[0]": want a port number 1-65535, got 70000`},
		{"t.json", `{"incoming": {"ports": ["80"]}}`, `t.json:1:25: "incoming.ports[0]": want a port number 1-65535, got "80" (remove the quotes)`},
		{"t.json", `{"incoming": {"ports": [8.5]}}`, `t.json:1:25: "incoming.ports[0]": want a port number 1-65535, got 8.5`},
		{"t.toml", "[incoming]\nport_mapping = [[1, 2], [3]]\n", `t.toml:2:26: "incoming.port_mapping[1]": want an array of 2 port numbers, got an array of 1`},
		{"t.toml", "[env.override]\nPORT = 8080\n", `t.toml:2:8: "env.override.PORT": want a string, got 8080 (quote it: "8080")`},
		{"t.toml", "namespace = 2024-01-01\n", `t.toml:1:13: "namespace": want a string, got a date`},
		{"t.yaml", "namespace: 2024-01-01\n", ""}, // an unquoted YAML date is text
		{"t.json", `[]`, `t.json:1:1: want an object of settings at the top level, got an array`},
		{"t.yaml", "- a\n", `t.yaml:1:1: want a mapping of settings at the top level, got a list`},
		{"t.toml", "fs = 1\n", `t.toml:1:6: "fs": want a table with keys "mode", "read_only", "read_write", "local" or "not_found", got 1`},
		// Durations.
		{"t.yaml", "agent:\n  linger: 90\n  startup_timeout: 1m30s\n", ""},
		{"t.yaml", "agent:\n  startup_timeout: '30'\n", `t.yaml:2:20: "agent.startup_timeout": want a duration like "30s" or a whole number of seconds, got "30" (add a unit: "30s", or write the number without quotes)`},
		{"t.toml", "[agent]\nlinger = 1.5\n", `t.toml:2:10: "agent.linger": want a duration like "30s" or a whole number of seconds, got 1.5`},
		{"t.json", `{"agent": {"linger": "-5s"}}`, `t.json:1:22: "agent.linger": want a positive duration, got -5s`},
		// Unknown keys: typos, keys from another section, mirrord's layout.
		{"t.yaml", "mode: read\n", `t.yaml:1:1: unknown key "mode" (did you mean "fs.mode" or "incoming.mode"?)`},
		{"t.yaml", "outgoing:\n  ignoreLocalhost: true\n", `t.yaml:2:3: unknown key "outgoing.ignoreLocalhost" (did you mean "outgoing.ignore_localhost"?)`},
		{"t.yaml", "fs: {mode: read, Mode: write}\n", `t.yaml:1:18: unknown key "fs.Mode" (did you mean "fs.mode"?)`},
		{"t.toml", "[feature.fs]\nmode = 'read'\n", `t.toml:1:2: unknown key "feature" (tether's keys are mirrord's feature.* keys one level up: write "fs", "env", "outgoing", "dns", "incoming" at the top level)`},
		{"t.json", `{"dns": {"filter": {"locla": []}}}`, `t.json:1:21: unknown key "dns.filter.locla" (did you mean "dns.filter.local"?)`},
		{"t.json", `{"dns": {"zzz": 1}}`, `t.json:1:10: unknown key "dns.zzz" (known keys here: enabled, filter)`},
		// Duplicate keys.
		{"t.yaml", "fs:\n  mode: read\nfs:\n  mode: write\n", `t.yaml:3:1: "fs": duplicate key (first set on line 1); keep one`},
		{"t.json", "{\"env\": {\"override\": {\"A\": \"1\",\n \"A\": \"2\"}}}", `t.json:2:2: "env.override.A": duplicate key (first set on line 1); keep one`},
		{"t.toml", "[fs]\nmode='read'\n[fs]\n", `t.toml:3:2: TOML syntax error: table fs already exists (put all its keys under one table header)`},
		// YAML specifics.
		{"t.yaml", "outgoing:\n  filter: &f\n    local: [10.0.0.0/8]\ndns:\n  filter:\n    <<: *f\n", "t.yaml:3:13: \"dns.filter.local[0]\": want a host name (\".example.com\" also matches subdomains) or \"re:REGEX\", got \"10.0.0.0/8\""},
		{"t.yaml", "a: b\n---\nc: d\n", `t.yaml:2:1: a second YAML document (after ---): a config file holds one document`},
		{"t.yaml", "fs:\n\tmode: read\n", `t.yaml:2: YAML syntax error: found character that cannot start any token (tabs cannot indent YAML; use spaces)`},
		{"t.yaml", "x: &a [*a]\n", `t.yaml:1:8: YAML nested too deeply (an alias inside its own anchor?)`},
		{"t.yaml", "fs: !custom x\n", `t.yaml:1:5: unsupported YAML tag "!custom"`},
		// JSON specifics.
		{"t.json", "", `t.json:1:1: empty JSON file: write {} for a config with all defaults`},
		{"t.json", "// c\n{}", `t.json:1:1: JSON syntax error: invalid character '/' looking for beginning of value (JSON has no comments; use a .yaml or .toml config to keep comments)`},
		{"t.json", "{\"fs\": {}\n \"dns\": {}}", `t.json:2:2: JSON syntax error: invalid character '"' after object key:value pair (missing comma?)`},
		{"t.json", `{"fs": {}} {}`, `t.json:1:12: JSON syntax error: invalid character '{' after top-level value (a config file holds one object)`},
		{"t.json", "{\"fs\": {\n", `t.json:1:8: JSON syntax error: unexpected end of file (a missing }, ] or "?)`},
		{"t.json", `{"target": "é", "hostnme": 1}`, `t.json:1:17: unknown key "hostnme" (did you mean "hostname"?)`}, // columns count characters
		// Several problems are all reported, in file order.
		{"t.yaml", "fs:\n  mode: bad\nincoming:\n  ports: [0]\nzzz: 1\n", "t.yaml:5:1: unknown key \"zzz\" (remove it; tether config schema lists every key)"},
		{"t.yaml", "fs:\n  mode: bad\nincoming:\n  ports: [0]\n",
			"t.yaml:2:9: \"fs.mode\": want \"read\", \"write\" or \"local\", got \"bad\"\n" +
				"t.yaml:4:11: \"incoming.ports[0]\": want a port number 1-65535, got 0"},
		// File names.
		{"t.ini", "", `t.ini: unsupported config file extension ".ini": use .json, .yaml, .yml or .toml`},
		{"tether", "", `tether: config file has no extension: name it .json, .yaml, .yml or .toml`},
	} {
		_, err := Parse(tc.name, []byte(tc.data))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("Parse(%s, %q):\n got: %s\nwant: %s", tc.name, tc.data, got, tc.want)
		}
	}
}

func TestLoadFileErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read config: open ") {
		t.Errorf("missing file: %v", err)
	}
	_, err = Load("testdata/good/dev.env")
	if err == nil || !strings.Contains(err.Error(), `unsupported config file extension ".env"`) {
		t.Errorf("bad extension: %v", err)
	}
}

func TestLoadDefault(t *testing.T) {
	dir := t.TempDir()
	c, path, err := LoadDefault(dir)
	if err != nil || path != "" || !reflect.DeepEqual(*c, Config{}) {
		t.Fatalf("no config: %+v, %q, %v", c, path, err)
	}
	if c.FSMode() != "read" {
		t.Errorf("defaults: FSMode() = %q", c.FSMode())
	}

	if err := os.Mkdir(filepath.Join(dir, DefaultDir), 0o755); err != nil {
		t.Fatal(err)
	}
	yml := filepath.Join(dir, DefaultDir, "config.yml")
	if err := os.WriteFile(yml, []byte("fs:\n  mode: local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, path, err = LoadDefault(dir)
	if err != nil || path != yml || c.FSMode() != "local" {
		t.Fatalf("one config: %+v, %q, %v", c, path, err)
	}

	if err := os.WriteFile(filepath.Join(dir, DefaultDir, "config.toml"), []byte("[fs]\nmode = 'write'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadDefault(dir)
	if err == nil || !strings.Contains(err.Error(), "found 2 config files") || !strings.Contains(err.Error(), "keep only one") {
		t.Fatalf("two configs: %v", err)
	}

	if err := os.Remove(yml); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, DefaultDir, "config.toml"), []byte("[fs]\nmode = 'rw'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadDefault(dir)
	want := filepath.Join(dir, DefaultDir, "config.toml") + `:2:8: "fs.mode": want "read", "write" or "local", got "rw"`
	if err == nil || err.Error() != want {
		t.Fatalf("bad config:\n got: %v\nwant: %s", err, want)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Column: 5, Path: "fs.mode", Msg: "bad"}, `f.yaml:3:5: "fs.mode": bad`},
		{Error{File: "f.yaml", Line: 3, Path: "fs.mode", Msg: "bad"}, `f.yaml:3: "fs.mode": bad`},
		{Error{File: "f.yaml", Msg: "bad"}, `f.yaml: bad`},
		{Error{Line: 2, Msg: "bad"}, `line 2: bad`},
		{Error{Path: "fs.mode", Msg: "bad"}, `"fs.mode": bad`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"a":                   "",
		"a.b":                 "a",
		"a.b[1]":              "a.b",
		`env.override["x.y"]`: "env.override",
		`env.override["a[b"]`: "env.override",
		"a[0].b":              "a[0]",
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLoadTarget: target is a string (its path) or a mapping, in every
// format.
func TestLoadTarget(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       Target
	}{
		{"s.yaml", "target: deployment/web\n", Target{Path: "deployment/web"}},
		{"m.yaml", "target:\n  selector: app=web,tier!=db\n", Target{Selector: "app=web,tier!=db"}},
		{"p.yaml", "target:\n  path: service/web\n", Target{Path: "service/web"}},
		{"s.json", `{"target": "pod/a"}`, Target{Path: "pod/a"}},
		{"m.json", `{"target": {"selector": "app=web"}}`, Target{Selector: "app=web"}},
		{"s.toml", "target = \"pod/a\"\n", Target{Path: "pod/a"}},
		{"m.toml", "[target]\nselector = \"app=web\"\n", Target{Selector: "app=web"}},
	} {
		c, err := Parse(tc.name, []byte(tc.data))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.Target != tc.want {
			t.Errorf("%s: target %+v, want %+v", tc.name, c.Target, tc.want)
		}
	}
	if _, err := Parse("x.yaml", []byte("target:\n  selectr: app=web\n")); err == nil || !strings.Contains(err.Error(), `unknown key "target.selectr"`) {
		t.Errorf("a misspelt target key: %v, want unknown key \"target.selectr\"", err)
	}
}
