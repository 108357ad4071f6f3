package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/layer"
	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/protocol"
)

// helperListen makes this test binary a program that listens on a port
// (os.Args[2]) and exits: the command of the PORT-TAKEN-LOCAL row.
const helperListen = "__catalogue_listen"

// TestMain lets this test binary be what `tether exec` runs: the
// supervisor re-executes it to install the seccomp filter
// (layer.MaybeTrampoline), and a row runs it as a helper program.
func TestMain(m *testing.M) {
	layer.MaybeTrampoline()
	if len(os.Args) == 3 && os.Args[1] == helperListen {
		// All addresses: a loopback-only listener would stay local (not
		// subscribed, never moved).
		ln, err := net.Listen("tcp4", ":"+os.Args[2])
		if err != nil {
			fmt.Fprintf(os.Stderr, "helper: %v\n", err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stderr, "helper: asked %s, listening on %s\n", os.Args[2], ln.Addr())
		ln.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// catalogueRow is one user error of the catalogue in docs/errors.md: what
// the user runs, and what tether must answer.
type catalogueRow struct {
	id   string // the entry in docs/errors.md
	name string
	// args are tether's arguments; files are written to the row's own
	// directory (its working directory and HOME) before the run. In both,
	// {dir} stands for that directory and {NAME} for the fixture's
	// addresses (see catalogueFixture.expand).
	args  []string
	files map[string]string
	env   map[string]string // on top of KUBECONFIG={dir}/no-kubeconfig, HOME={dir}, no TETHER_AGENT_TOKEN
	code  int               // the exit code
	// problem says what went wrong and where (key path, file:line:col...);
	// fix says what to do. Every string must be in stderr.
	problem, fix []string
	// pending, when set, says that the message lacks its fix today and what
	// change it needs (in a file this catalogue could not change): the fix
	// strings are then the proposed ones and are not required.
	pending string
}

// cfgRows is the same config file checked by `tether config verify` and
// loaded by `tether exec`: both exit 2 with the same message.
func cfgRows(id, name, file, content string, problem, fix []string) []catalogueRow {
	files := map[string]string{file: content}
	return []catalogueRow{
		{id: id, name: name + "/verify", args: []string{"config", "verify", "-f", file}, files: files, code: 2, problem: problem, fix: fix},
		{id: id, name: name + "/exec", args: []string{"exec", "-f", file, "--agent-addr", "127.0.0.1:1", "--", "true"}, files: files, code: 2, problem: problem, fix: fix},
	}
}

// TestCatalogue runs tether's command line (cli.Run, in this process) for
// every user error that needs no cluster, and checks the exit code (2 for
// usage and config mistakes), that stderr names the problem and the fix,
// that nothing is printed on stdout and that nothing panics. The errors
// that need a cluster are in test/e2e/catalogue_test.go, the machine checks
// (old kernel, no seccomp) in internal/layer/catalogue_linux_test.go.
func TestCatalogue(t *testing.T) {
	fx := newCatalogueFixture(t)
	rows := catalogueRows()
	docs := readDocs(t)
	// On a machine that cannot run the supervisor, tether exec stops at
	// that check (MACHINE-* rows) before the errors of later rows.
	machineErr := layer.Check()
	for i, r := range rows {
		t.Run(fmt.Sprintf("%02d_%s/%s", i, r.id, r.name), func(t *testing.T) {
			if !strings.Contains(docs, "`"+r.id+"`") {
				t.Errorf("docs/errors.md does not list %s", r.id)
			}
			code, stdout, stderr := fx.run(t, r)
			if machineErr != nil && strings.Contains(stderr, machineErr.Error()) {
				// Expected only on a machine that cannot run the
				// supervisor; make test's machines must (TETHER_INTEGRATION=1).
				if os.Getenv("TETHER_INTEGRATION") == "1" {
					t.Fatalf("this machine must run tether exec but cannot: %v", machineErr)
				}
				t.Skipf("this machine cannot run tether exec: %v", machineErr)
			}
			if strings.Contains(stdout+stderr, "panic:") || strings.Contains(stdout+stderr, "goroutine ") {
				t.Fatalf("tether panicked:\n%s%s", stdout, stderr)
			}
			if code != r.code {
				t.Errorf("exit code %d, want %d", code, r.code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, s := range r.problem {
				if !strings.Contains(stderr, fx.expand(s, "")) {
					t.Errorf("stderr does not name the problem: lacks %q", fx.expand(s, ""))
				}
			}
			var missing []string
			for _, s := range r.fix {
				if !strings.Contains(stderr, fx.expand(s, "")) {
					missing = append(missing, fx.expand(s, ""))
				}
			}
			switch {
			case r.pending == "" && len(missing) > 0:
				t.Errorf("stderr does not name the fix: lacks %q", missing)
			case r.pending != "" && len(missing) == 0:
				t.Errorf("the fix is there now: drop the row's pending note (%s)", r.pending)
			case r.pending != "":
				t.Logf("fix pending: %s", r.pending)
			}
			if t.Failed() {
				t.Logf("tether %s\nstderr:\n%s", fx.expand(strings.Join(r.args, " "), ""), stderr)
			}
		})
	}
}

// TestCatalogueDocumented: every ID in docs/errors.md belongs to a row of
// some catalogue test (or a test named for it), so the list cannot keep
// entries no test checks.
func TestCatalogueDocumented(t *testing.T) {
	docs := readDocs(t)
	ids := regexp.MustCompile("(?m)^\\| `([A-Z0-9-]+)` \\|").FindAllStringSubmatch(docs, -1)
	if len(ids) < 40 {
		t.Fatalf("docs/errors.md lists %d IDs; the table rows start with | `ID` |", len(ids))
	}
	var tests bytes.Buffer
	err := filepath.WalkDir(filepath.Join("..", ".."), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tests.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range ids {
		id := m[1]
		if seen[id] {
			t.Errorf("docs/errors.md lists %s twice", id)
		}
		seen[id] = true
		if !bytes.Contains(tests.Bytes(), []byte(`"`+id+`"`)) {
			t.Errorf("docs/errors.md lists %s, but no test has a row %q", id, id)
		}
	}
}

// coveredElsewhere are the catalogue's entries checked by tests of their
// own (they need several sessions, a cluster fault or a network namespace),
// or by none: file and test name where the message is checked.
var coveredElsewhere = []struct{ id, file, test string }{
	{"AGENT-PSA", "test/e2e/errors_test.go", "TestPodSecurityBaseline"},
	{"AGENT-IMAGE", "test/e2e/errors_test.go", "TestBadAgentImage"},
	{"AGENT-OOM", "test/e2e/faults_test.go", "TestFaults"},
	{"INCOMING-STOLEN", "test/integration/incoming_test.go", "TestIncomingStealAll"},
	{"INCOMING-OVERLAP", "test/integration/incoming_test.go", "TestIncomingOverlappingFilters"},
	{"RECONNECT", "internal/session/reconnect_test.go", "TestSessionResumesAfterTunnelDrop"},
	{"REATTACH", "test/e2e/faults_test.go", "TestFaults"},
	{"TGT-POD-GONE", "test/e2e/followowner_test.go", "TestFollowOwner"},
	{"TGT-FOLLOW-NO-OWNER", "test/e2e/followowner_test.go", "TestFollowOwner"},
}

// TestCatalogueCoveredElsewhere: the tests named for the entries covered
// elsewhere exist.
func TestCatalogueCoveredElsewhere(t *testing.T) {
	docs := readDocs(t)
	for _, c := range coveredElsewhere {
		if !strings.Contains(docs, "`"+c.id+"`") {
			t.Errorf("docs/errors.md does not list %s", c.id)
		}
		if c.file == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", "..", c.file))
		if err != nil {
			t.Errorf("%s: %v", c.id, err)
			continue
		}
		if !bytes.Contains(b, []byte("func "+c.test+"(")) {
			t.Errorf("%s: %s has no %s", c.id, c.file, c.test)
		}
	}
}

func readDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "errors.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// catalogueFixture holds the servers the rows talk to, all on loopback.
type catalogueFixture struct {
	addrs map[string]string
}

// expand replaces {dir} and the fixture's {NAME}s in s.
func (fx *catalogueFixture) expand(s, dir string) string {
	if dir != "" {
		s = strings.ReplaceAll(s, "{dir}", dir)
	}
	for k, v := range fx.addrs {
		s = strings.ReplaceAll(s, "{"+k+"}", v)
	}
	return s
}

// run runs tether for r in a fresh directory and returns its exit code,
// stdout and stderr. A panic is caught and returned in stderr.
func (fx *catalogueFixture) run(t *testing.T, r catalogueRow) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range r.files {
		writeFile(t, dir, name, fx.expand(content, dir))
	}
	env := map[string]string{"KUBECONFIG": filepath.Join(dir, "no-kubeconfig"), "HOME": dir, "TETHER_AGENT_TOKEN": ""}
	for k, v := range r.env {
		env[k] = fx.expand(v, dir)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Chdir(dir)
	args := make([]string, len(r.args))
	for i, a := range r.args {
		args[i] = fx.expand(a, dir)
	}
	var out, errb lockedBuffer
	func() {
		defer func() {
			if p := recover(); p != nil {
				fmt.Fprintf(&errb, "panic: %v\n%s", p, debug.Stack())
			}
		}()
		code = Run(context.Background(), args, Streams{Out: &out, Err: &errb})
	}()
	return code, out.String(), errb.String()
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writers of a
// session (the command's output copier, the supervisor's warnings).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newCatalogueFixture(t *testing.T) *catalogueFixture {
	fx := &catalogueFixture{addrs: map[string]string{}}

	// A loopback port nothing listens on.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fx.addrs["closed"] = ln.Addr().String()
	ln.Close()

	// An API server that refuses every credential, as one does for an
	// expired token.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
	}))
	t.Cleanup(api.Close)
	fx.addrs["api401"] = api.URL

	// Servers that are not agents: one greets like an SSH server, one
	// hangs up at once.
	fx.addrs["ssh"] = rawServer(t, func(c net.Conn) { fmt.Fprint(c, "SSH-2.0-OpenSSH_9.2\r\n") })
	fx.addrs["hangup"] = rawServer(t, func(net.Conn) {})

	// Agents of other releases: one answers with an older protocol, one
	// refuses this tether's protocol as too old.
	fx.addrs["oldagent"] = fakeAgent(t, protocol.Welcome{Version: protocol.MinVersion - 1})
	fx.addrs["newagent"] = fakeAgent(t, protocol.Welcome{Version: protocol.Version + 1,
		Error: fmt.Sprintf("tether speaks protocol %d, but this agent needs %d or newer: tether comes from an older release; upgrade tether, or use the agent of its release (agent.image)", protocol.Version, protocol.Version+1)})

	// Real agents (over a directory, with a fake nftables): one with a
	// token, one without.
	fx.addrs["tokenagent"] = startAgent(t, "s3cret")
	fx.addrs["agent"] = startAgent(t, "")

	// A local port in use, which a program run by tether then binds.
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	fx.addrs["taken"] = fmt.Sprint(taken.Addr().(*net.TCPAddr).Port)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fx.addrs["helper"] = exe
	return fx
}

// rawServer runs serve on each connection to a loopback port (then closes
// it) and returns the address.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serve(c)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// fakeAgent answers every handshake on a loopback port with w and returns
// the address.
func fakeAgent(t *testing.T, w protocol.Welcome) string {
	t.Helper()
	return rawServer(t, func(c net.Conn) {
		var h protocol.Hello
		if protocol.ReadFrame(c, &h) == nil {
			protocol.WriteFrame(c, w)
		}
	})
}

// startAgent runs a real agent over an empty directory target, with an
// in-memory redirector, on a loopback port.
func startAgent(t *testing.T, token string) string {
	t.Helper()
	target, err := agent.NewDirTarget(t.TempDir(), []string{"FROM_POD=1"}, "pod-1")
	if err != nil {
		t.Fatal(err)
	}
	srv := &agent.Server{
		Target:        target,
		Token:         token,
		NewRedirector: func() (netfilter.Redirector, error) { return netfilter.NewFake(), nil },
		OriginalDst:   func(*net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, fmt.Errorf("no redirects here") },
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, ln)
	t.Cleanup(cancel)
	return ln.Addr().String()
}

// kubeconfigFor is a kubeconfig whose one context talks to server.
func kubeconfigFor(server string) string {
	return `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + server + `"}}]
users: [{name: u, user: {token: expired-token}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: demo}}]
current-context: ctx
`
}

// catalogueRows is the catalogue of user errors that need no cluster.
func catalogueRows() []catalogueRow {
	closedKC := map[string]string{"kubeconfig": kubeconfigFor("https://{closed}")}
	var rows []catalogueRow
	add := func(r ...catalogueRow) { rows = append(rows, r...) }

	// ---- Command line ----
	add(
		catalogueRow{id: "CLI-UNKNOWN-COMMAND", name: "unknown command", args: []string{"frobnicate"}, code: 2,
			problem: []string{`unknown command "frobnicate" for "tether"`}, fix: []string{"Run 'tether --help' for the list of commands."}},
		catalogueRow{id: "CLI-UNKNOWN-COMMAND", name: "misspelt command", args: []string{"exce", "--", "true"}, code: 2,
			problem: []string{`unknown command "exce" for "tether"`}, fix: []string{"Did you mean this?\n\texec"}},
		catalogueRow{id: "CLI-EXTRA-ARGS", name: "ls with an argument", args: []string{"ls", "web"}, code: 2,
			problem: []string{`tether ls takes no arguments, got "web"`}, fix: []string{"see tether ls --help"}},
		catalogueRow{id: "CLI-EXTRA-ARGS", name: "verify without -f", args: []string{"config", "verify", "tether.yaml"}, code: 2,
			problem: []string{"config verify takes the file with -f"}, fix: []string{"tether config verify -f tether.yaml"}},
		catalogueRow{id: "CLI-UNKNOWN-FLAG", name: "unknown flag", args: []string{"exec", "--bogus", "--", "true"}, code: 2,
			problem: []string{"unknown flag: --bogus"}, fix: []string{"(see --help)"}},
		catalogueRow{id: "CLI-BAD-FLAG-VALUE", name: "bool flag", args: []string{"exec", "--ephemeral=maybe", "--", "true"}, code: 2,
			problem: []string{`invalid argument "maybe" for "--ephemeral" flag`}, fix: []string{"(see --help)"}},
		catalogueRow{id: "CLI-BAD-FLAG-VALUE", name: "flag without its value", args: []string{"exec", "-n"}, code: 2,
			problem: []string{"flag needs an argument: 'n' in -n"}, fix: []string{"(see --help)"}},
		catalogueRow{id: "CLI-BAD-FLAG-VALUE", name: "progress mode", args: []string{"exec", "--progress", "fancy", "--agent-addr", "127.0.0.1:1", "--", "true"}, code: 2,
			problem: []string{`--progress "fancy"`}, fix: []string{"want tty, plain, json or off"}},
		catalogueRow{id: "CLI-BAD-FLAG-VALUE", name: "ls output format", args: []string{"ls", "-o", "yaml"}, code: 2,
			problem: []string{`-o "yaml"`}, fix: []string{"want json or text"}},
		catalogueRow{id: "CLI-NO-COMMAND", name: "exec without a command", args: []string{"exec", "--agent-addr", "127.0.0.1:1"}, code: 2,
			problem: []string{"exec needs a command to run"}, fix: []string{"tether exec [flags] -- COMMAND [ARGS...]"}},
		catalogueRow{id: "CLI-NO-TARGET", name: "exec without a target", args: []string{"exec", "--", "true"}, code: 2,
			problem: []string{"nothing to run against"}, fix: []string{"-t deployment/NAME", "--agent-addr HOST:PORT"}},
		catalogueRow{id: "CLI-NO-TARGET", name: "empty -t", args: []string{"exec", "-t", "", "--", "true"}, code: 2,
			problem: []string{"nothing to run against"}, fix: []string{"-t deployment/NAME"}},
		catalogueRow{id: "CLI-VERIFY-NO-FILE", name: "config verify without a file", args: []string{"config", "verify"}, code: 2,
			problem: []string{"config verify needs a file"}, fix: []string{"tether config verify -f FILE"}},
		catalogueRow{id: "AGENT-ADDR-SYNTAX", name: "agent address without a port", args: []string{"exec", "--agent-addr", "agent.local", "--", "true"}, code: 2,
			problem: []string{`--agent-addr "agent.local"`}, fix: []string{"want HOST:PORT"}},
		catalogueRow{id: "CLI-CONFLICT", name: "--agent-addr with a target", args: []string{"exec", "--agent-addr", "127.0.0.1:1", "-t", "deployment/web", "--", "true"}, code: 2,
			problem: []string{"--agent-addr and -t/-l/--ephemeral cannot be used together"}, fix: []string{"drop one"}},
		catalogueRow{id: "CLI-CONFLICT", name: "--agent-addr with --follow-owner", args: []string{"exec", "--agent-addr", "127.0.0.1:1", "--follow-owner", "--", "true"}, code: 2,
			problem: []string{"--follow-owner needs a pod target in Kubernetes (-t pod/NAME), and --agent-addr skips Kubernetes"}, fix: []string{"drop one"}},
		catalogueRow{id: "CLI-CONFLICT", name: "target and selector", args: []string{"exec", "-t", "deployment/web", "-l", "app=web", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{"-t deployment/web and -l app=web both name the target"}, fix: []string{"drop one"}},
	)

	// ---- Config files: where they are, their syntax ----
	add(
		catalogueRow{id: "CFG-FILE-MISSING", name: "-f names no file", args: []string{"exec", "-f", "nope.yaml", "--agent-addr", "127.0.0.1:1", "--", "true"}, code: 2,
			problem: []string{"read config: open nope.yaml: no such file or directory"}, fix: []string{"check the path of the config file"}},
		catalogueRow{id: "CFG-FILE-MISSING", name: "verify names no file", args: []string{"config", "verify", "-f", "nope.toml"}, code: 2,
			problem: []string{"open nope.toml: no such file or directory"}, fix: []string{"check the path of the config file"}},
		catalogueRow{id: "CFG-FILE-EXTENSION", name: "unknown extension", args: []string{"config", "verify", "-f", "tether.conf"}, files: map[string]string{"tether.conf": "fs: {}"}, code: 2,
			problem: []string{`tether.conf: unsupported config file extension ".conf"`}, fix: []string{"use .json, .yaml, .yml or .toml"}},
		catalogueRow{id: "CFG-FILE-EXTENSION", name: "no extension", args: []string{"exec", "-f", "tether", "--agent-addr", "127.0.0.1:1", "--", "true"}, files: map[string]string{"tether": "fs: {}"}, code: 2,
			problem: []string{"tether: config file has no extension"}, fix: []string{"name it .json, .yaml, .yml or .toml"}},
		catalogueRow{id: "CFG-FILE-SEVERAL", name: "two default config files", args: []string{"exec", "--agent-addr", "127.0.0.1:1", "--", "true"},
			files: map[string]string{".tether/config.yaml": "fs: {}\n", ".tether/config.json": "{}"}, code: 2,
			problem: []string{"found 2 config files", ".tether/config.json", ".tether/config.yaml"}, fix: []string{"keep only one of them"}},
		catalogueRow{id: "CFG-SYNTAX", name: "default config file is read", args: []string{"exec", "--agent-addr", "127.0.0.1:1", "--", "true"},
			files: map[string]string{".tether/config.toml": "[fs\nmode = \"read\"\n"}, code: 2,
			problem: []string{".tether/config.toml:1:4: TOML syntax error: expected ']' to close table name"}, fix: []string{"]"}},
	)
	add(cfgRows("CFG-SYNTAX", "JSON trailing comma", "t.json", `{"fs": {"mode": "read",}}`,
		[]string{"t.json:1:24: JSON syntax error"}, []string{"remove the trailing comma"})...)
	add(cfgRows("CFG-SYNTAX", "JSON unclosed object", "t.json", "{\"fs\": {\"mode\": \"read\"}\n",
		[]string{"t.json:1:23: JSON syntax error: unexpected end of file"}, []string{`a missing }, ] or "?`})...)
	add(cfgRows("CFG-SYNTAX", "JSON comment", "t.json", "// dev\n{}",
		[]string{"t.json:1:1: JSON syntax error"}, []string{"JSON has no comments; use a .yaml or .toml config"})...)
	add(cfgRows("CFG-SYNTAX", "JSON missing colon", "t.json", `{"fs" {"mode": "read"}}`,
		[]string{"t.json:1:7: JSON syntax error"}, []string{"missing colon?"})...)
	add(cfgRows("CFG-SYNTAX", "JSON empty file", "t.json", "",
		[]string{"t.json:1:1: empty JSON file"}, []string{"write {} for a config with all defaults"})...)
	add(cfgRows("CFG-SYNTAX", "YAML tab", "t.yaml", "fs:\n\tmode: read\n",
		[]string{"t.yaml:2: YAML syntax error"}, []string{"tabs cannot indent YAML; use spaces"})...)
	add(cfgRows("CFG-SYNTAX", "YAML indentation", "t.yaml", "fs:\n  mode: read\n   local: [x]\n",
		[]string{"t.yaml:3: YAML syntax error: mapping values are not allowed in this context"}, []string{"check the indentation of this line"})...)
	add(cfgRows("CFG-SYNTAX", "YAML unclosed list", "t.yaml", "fs:\n  local: [x\n",
		[]string{"t.yaml:", "YAML syntax error"}, []string{"check the indentation and the closing ], } or quote"})...)
	add(cfgRows("CFG-SYNTAX", "YAML two documents", "t.yaml", "fs: {}\n---\ndns: {}\n",
		[]string{"t.yaml:2:1: a second YAML document"}, []string{"a config file holds one document"})...)
	add(cfgRows("CFG-SYNTAX", "TOML unclosed table", "t.toml", "[fs\nmode = \"read\"\n",
		[]string{"t.toml:1:4: TOML syntax error: expected ']' to close table name"}, []string{"]"})...)
	add(cfgRows("CFG-SYNTAX", "TOML unquoted string", "t.toml", "[fs]\nmode = read\n",
		[]string{"t.toml:2:8: TOML syntax error"}, []string{`strings take quotes: mode = "read"`})...)
	add(cfgRows("CFG-DUPLICATE-KEY", "YAML", "t.yaml", "fs:\n  mode: read\nfs:\n  mode: write\n",
		[]string{`t.yaml:3:1: "fs": duplicate key (first set on line 1)`}, []string{"keep one"})...)
	add(cfgRows("CFG-DUPLICATE-KEY", "TOML key", "t.toml", "[fs]\nmode = \"read\"\nmode = \"write\"\n",
		[]string{"t.toml:3:1: TOML syntax error: key mode is already defined"}, []string{"keep one of them"})...)
	add(cfgRows("CFG-DUPLICATE-KEY", "TOML table", "t.toml", "[fs]\nmode = \"read\"\n[fs]\n",
		[]string{"t.toml:3:2: TOML syntax error: table fs already exists"}, []string{"put all its keys under one table header"})...)
	add(cfgRows("CFG-DUPLICATE-KEY", "JSON", "t.json", `{"fs": {}, "fs": {}}`,
		[]string{`t.json:1:12: "fs": duplicate key (first set on line 1)`}, []string{"keep one"})...)

	// ---- Config files: keys, types, values at each level ----
	add(cfgRows("CFG-UNKNOWN-KEY", "top level JSON", "t.json", "{\n  \"fss\": {}\n}",
		[]string{`t.json:2:3: unknown key "fss"`}, []string{`did you mean "fs"?`})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "top level, nothing close", "t.yaml", "fs: {}\nzzz: 1\n",
		[]string{`t.yaml:2:1: unknown key "zzz"`}, []string{"remove it; tether config schema lists every key"})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "mirrord's feature", "t.toml", "[feature.fs]\nmode = 'read'\n",
		[]string{`t.toml:1:2: unknown key "feature"`}, []string{`write "fs", "env", "outgoing", "dns", "incoming" at the top level`})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "nested YAML", "t.yaml", "fs:\n  mdoe: write\n",
		[]string{`t.yaml:2:3: unknown key "fs.mdoe"`}, []string{`did you mean "fs.mode"?`})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "nested TOML", "t.toml", "[outgoing]\nignoreLocalhost = true\n",
		[]string{`t.toml:2:1: unknown key "outgoing.ignoreLocalhost"`}, []string{`did you mean "outgoing.ignore_localhost"?`})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "key of another section", "t.yaml", "mode: steal\n",
		[]string{`t.yaml:1:1: unknown key "mode"`}, []string{`did you mean "fs.mode" or "incoming.mode"?`})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "in a list element", "t.yaml", "incoming:\n  http_filter:\n    all_of:\n    - heder: x\n",
		[]string{`t.yaml:4:7: unknown key "incoming.http_filter.all_of[0].heder"`}, []string{`did you mean "incoming.http_filter.all_of[0].header"?`})...)
	add(cfgRows("CFG-UNKNOWN-KEY", "in a list element JSON", "t.json", `{"dns": {"zzz": 1}}`,
		[]string{`t.json:1:10: unknown key "dns.zzz"`}, []string{"known keys here: enabled, filter"})...)
	add(cfgRows("CFG-TYPE", "top level is a list", "t.yaml", "- fs\n",
		[]string{"t.yaml:1:1: want a mapping of settings at the top level, got a list"}, []string{"want a mapping"})...)
	add(cfgRows("CFG-TYPE", "top level JSON array", "t.json", "[1]",
		[]string{"t.json:1:1: want an object of settings at the top level, got an array"}, []string{"want an object"})...)
	add(cfgRows("CFG-TYPE", "top-level string", "t.yaml", "target: 5\n",
		[]string{`t.yaml:1:9: "target": want a string such as deployment/NAME, or a mapping with keys "path" or "selector", got 5`}, []string{`quote it: "5"`})...)
	add(cfgRows("CFG-TYPE", "section is a string", "t.toml", "fs = \"x\"\n",
		[]string{`t.toml:1:6: "fs": want a table`}, []string{`keys "mode", "read_only", "read_write", "local" or "not_found"`})...)
	add(cfgRows("CFG-TYPE", "nested bool", "t.yaml", "dns:\n  enabled: \"yes\"\n",
		[]string{`t.yaml:2:12: "dns.enabled"`}, []string{`want true or false, got "yes"`})...)
	add(cfgRows("CFG-TYPE", "list element", "t.json", `{"incoming": {"ports": [80, "abc"]}}`,
		[]string{`t.json:1:29: "incoming.ports[1]"`}, []string{`want a port number 1-65535, got "abc"`})...)
	add(cfgRows("CFG-TYPE", "pair of ports", "t.yaml", "incoming:\n  port_mapping: [[8080]]\n",
		[]string{`"incoming.port_mapping[0]"`}, []string{"want a list of 2 port numbers, got a list of 1"})...)
	add(cfgRows("CFG-TYPE", "map value", "t.yaml", "env:\n  override:\n    A: [1]\n",
		[]string{`t.yaml:3:8: "env.override.A"`}, []string{"want a string, got a list"})...)
	add(cfgRows("CFG-VALUE", "enum", "t.yaml", "fs:\n  mode: wirte\n",
		[]string{`t.yaml:2:9: "fs.mode"`, `got "wirte"`}, []string{`want "read", "write" or "local"`, `did you mean "write"?`})...)
	add(cfgRows("CFG-VALUE", "enum TOML", "t.toml", "[incoming]\nmode = \"stael\"\n",
		[]string{`t.toml:2:8: "incoming.mode"`}, []string{`want "mirror", "steal" or "off"`, `did you mean "steal"?`})...)
	add(cfgRows("CFG-VALUE", "port out of range", "t.toml", "[incoming]\nports = [80, 70000]\n",
		[]string{`t.toml:2:14: "incoming.ports[1]"`}, []string{"want a port number 1-65535, got 70000"})...)
	add(cfgRows("CFG-VALUE", "port zero", "t.yaml", "incoming:\n  ignore_ports: [0]\n",
		[]string{`"incoming.ignore_ports[0]"`}, []string{"want a port number 1-65535, got 0"})...)
	add(cfgRows("CFG-VALUE", "duration", "t.yaml", "agent:\n  linger: soon\n",
		[]string{`t.yaml:2:11: "agent.linger"`}, []string{`want a duration like "30s" or a whole number of seconds, got "soon"`})...)
	add(cfgRows("CFG-VALUE", "negative duration", "t.yaml", "agent:\n  startup_timeout: -5s\n",
		[]string{`"agent.startup_timeout"`}, []string{"want a positive duration"})...)
	add(cfgRows("CFG-VALUE", "agent address", "t.json", `{"agent": {"address": "agent.local"}}`,
		[]string{`"agent.address"`, `got "agent.local"`}, []string{"want HOST:PORT such as 10.0.0.5:7777"})...)
	add(cfgRows("CFG-VALUE", "outgoing filter entry", "t.yaml", "outgoing:\n  filter:\n    local: [\"tcp://db:99999\"]\n",
		[]string{`t.yaml:3:13: "outgoing.filter.local[0]"`, `bad port "99999"`}, []string{"want a port number 1-65535"})...)
	add(cfgRows("CFG-VALUE", "dns filter entry", "t.yaml", "dns:\n  filter:\n    local: [\"bad host!\"]\n",
		[]string{`"dns.filter.local[0]"`, `got "bad host!"`}, []string{`want a host name (".example.com" also matches subdomains) or "re:REGEX"`})...)
	add(cfgRows("CFG-VALUE", "env variable name", "t.yaml", "env:\n  exclude: [\"A=B\"]\n",
		[]string{`t.yaml:2:13: "env.exclude[0]"`, `"A=B" is not a variable name`}, []string{"no '=' allowed"})...)
	add(cfgRows("CFG-VALUE", "http filter element", "t.yaml", "incoming:\n  http_filter:\n    any_of:\n    - {header: x, path: y}\n",
		[]string{`t.yaml:4:7: "incoming.http_filter.any_of[0]"`}, []string{`want exactly one of "header", "path" or "method", got 2; use one entry per condition`})...)

	// ---- Regexes: every option that takes one ----
	for _, re := range []struct{ name, file, content, at string }{
		{"fs.read_only[0]", "t.yaml", "fs:\n  read_only: [\"(\"]\n", "t.yaml:2:15"},
		{"fs.read_write[0]", "t.json", `{"fs": {"read_write": ["^/app/("]}}`, "t.json:1:24"},
		{"fs.local[1]", "t.toml", "[fs]\nlocal = ['^/ok', '[a-']\n", "t.toml:2:18"},
		{"fs.not_found[0]", "t.yaml", "fs:\n  not_found: [\"a**\"]\n", "t.yaml:2:15"},
		{"incoming.http_filter.header_filter", "t.yaml", "incoming:\n  http_filter:\n    header_filter: \"^x-user: (alice\"\n", "t.yaml:3:20"},
		{"incoming.http_filter.path_filter", "t.json", `{"incoming": {"http_filter": {"path_filter": "/api/[v1"}}}`, "t.json:1:46"},
		{"incoming.http_filter.method_filter", "t.toml", "[incoming.http_filter]\nmethod_filter = \"GET|(POST\"\n", "t.toml:2:17"},
		{"incoming.http_filter.all_of[1].header", "t.yaml", "incoming:\n  http_filter:\n    all_of:\n    - path: ^/api\n    - header: \"x-(\"\n", "t.yaml:5:15"},
		{"incoming.http_filter.any_of[0].path", "t.yaml", "incoming:\n  http_filter:\n    any_of:\n    - path: \"\\\\p{Nope}\"\n", "t.yaml:4:13"},
		{"dns.filter.remote[0]", "t.yaml", "dns:\n  filter:\n    remote: [\"re:(svc\"]\n", "t.yaml:3:14"},
	} {
		add(cfgRows("CFG-REGEX", re.name, re.file, re.content,
			[]string{re.at + `: "` + re.name + `": bad regex`}, []string{"Go RE2 syntax: https://pkg.go.dev/regexp/syntax"})...)
	}
	add(cfgRows("CFG-REGEX", "empty regex", "t.yaml", "fs:\n  local: [\"\"]\n",
		[]string{`t.yaml:2:11: "fs.local[0]": empty regex`}, []string{"it would match every path; remove it"})...)

	// ---- Conflicting options ----
	for _, c := range []struct{ name, file, content, at, key, other, fix string }{
		{"env include and exclude", "t.yaml", "env:\n  include: [A]\n  exclude: [B]\n", "t.yaml:3:3", "env.exclude", "env.include", "remove one of the two"},
		{"outgoing local and remote", "t.toml", "[outgoing.filter]\nlocal = ['db:5432']\nremote = ['api:80']\n", "t.toml:3:1", "outgoing.filter.remote", "outgoing.filter.local", "not both"},
		{"dns local and remote", "t.json", `{"dns": {"filter": {"local": ["a.example"], "remote": ["b.example"]}}}`, "t.json:1:45", "dns.filter.remote", "dns.filter.local", "not both"},
		{"ports and ignore_ports", "t.yaml", "incoming:\n  ports: [80]\n  ignore_ports: [81]\n", "t.yaml:3:3", "incoming.ignore_ports", "incoming.ports", "remove one of the two"},
		{"two http filters", "t.yaml", "incoming:\n  http_filter:\n    header_filter: x\n    path_filter: y\n", "t.yaml:4:5", "incoming.http_filter.path_filter", "incoming.http_filter.header_filter", "put them in all_of or any_of"},
	} {
		add(cfgRows("CFG-CONFLICT", c.name, c.file, c.content,
			[]string{fmt.Sprintf("%s: %q: cannot be used together with %q", c.at, c.key, c.other)}, []string{c.fix})...)
	}

	// ---- env.env_file ----
	add(cfgRows("CFG-ENV-FILE", "missing", "t.yaml", "env:\n  env_file: .env.local\n",
		[]string{`t.yaml:2:13: "env.env_file"`, "open .env.local: no such file or directory"}, []string{"a relative path is relative to the current directory"})...)
	add(catalogueRow{id: "CFG-ENV-FILE", name: "bad line", args: []string{"config", "verify", "-f", "t.yaml"},
		files: map[string]string{"t.yaml": "env:\n  env_file: dev.env\n", "dev.env": "A=1\nthis is not a variable\n"}, code: 2,
		problem: []string{`"env.env_file"`, "dev.env:2"}, fix: []string{"KEY=VALUE"}})

	// ---- Targets ----
	add(
		catalogueRow{id: "TGT-UNKNOWN-KIND", name: "node", args: []string{"exec", "-t", "node/api", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`target "node/api": unknown kind "node"`}, fix: []string{"want targetless, pod, deployment, statefulset, replicaset, job, cronjob, rollout or service"}},
		catalogueRow{id: "TGT-UNKNOWN-KIND", name: "empty kind", args: []string{"exec", "-t", "/api", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`target "/api": unknown kind ""`}, fix: []string{"want targetless, pod, deployment"}},
		catalogueRow{id: "TGT-UNKNOWN-KIND", name: "in the config", args: []string{"exec", "-f", "t.yaml", "--kubeconfig", "kubeconfig", "--", "true"},
			files: map[string]string{"t.yaml": "target: ingress/api\n", "kubeconfig": kubeconfigFor("https://{closed}")}, code: 2,
			problem: []string{`target "ingress/api": unknown kind "ingress"`}, fix: []string{"want targetless, pod, deployment"}},
		catalogueRow{id: "TGT-BAD-SELECTOR", name: "flag", args: []string{"exec", "-l", "app in (web", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`label selector "app in (web"`}, fix: []string{"write it as kubectl -l takes it, e.g. app=web"}},
		catalogueRow{id: "TGT-BAD-SELECTOR", name: "in the config", args: []string{"config", "verify", "-f", "t.yaml"}, files: map[string]string{"t.yaml": "target:\n  selector: \"app in (web\"\n"}, code: 2,
			problem: []string{`t.yaml:2:13: "target.selector": not a label selector`}, fix: []string{"write it as kubectl -l takes it, e.g. app=web"}},
		catalogueRow{id: "TGT-BAD-NAME", name: "not a Kubernetes name", args: []string{"exec", "-t", "deployment/My_App", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`target "deployment/My_App": "My_App" is not a valid Kubernetes name`}, fix: []string{"write KIND/NAME with the object's name", "tether ls lists the targets"}},
		catalogueRow{id: "TGT-BAD-NAME", name: "too many parts", args: []string{"exec", "-t", "deployment/web/app", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`target "deployment/web/app"`}, fix: []string{"want KIND/NAME or KIND/NAME/container/CONTAINER, e.g. deployment/web"}},
		catalogueRow{id: "TGT-BAD-NAME", name: "empty container", args: []string{"exec", "-t", "pod/web-0/container/", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`target "pod/web-0/container/": container: empty name`}, fix: []string{"write KIND/NAME/container/CONTAINER"}},
		catalogueRow{id: "TGT-BAD-NAME", name: "blank target in the config", args: []string{"exec", "-f", "t.yaml", "--kubeconfig", "kubeconfig", "--", "true"},
			files: map[string]string{"t.yaml": "target: \" \"\n", "kubeconfig": kubeconfigFor("https://{closed}")}, code: 2,
			problem: []string{"empty target"}, fix: []string{"give one such as deployment/NAME, pod/NAME or targetless"}},
	)

	// ---- Kubernetes access ----
	add(
		catalogueRow{id: "KUBE-NO-CONTEXT", name: "KUBECONFIG names no file, HOME empty", args: []string{"exec", "-t", "deployment/web", "--", "true"},
			env: map[string]string{"KUBECONFIG": "{dir}/missing/kubeconfig", "HOME": ""}, code: 2,
			problem: []string{"no Kubernetes context"}, fix: []string{"set KUBECONFIG or pass --kubeconfig/--context", "--agent-addr"}},
		catalogueRow{id: "KUBE-NO-CONTEXT", name: "empty kubeconfig", args: []string{"ls"}, files: map[string]string{"empty.kubeconfig": ""},
			env: map[string]string{"KUBECONFIG": "{dir}/empty.kubeconfig"}, code: 2,
			problem: []string{"no Kubernetes context"}, fix: []string{"set KUBECONFIG or pass --kubeconfig/--context"}},
		catalogueRow{id: "KUBE-NO-CONTEXT", name: "--kubeconfig names no file", args: []string{"exec", "-t", "deployment/web", "--kubeconfig", "nope.kubeconfig", "--", "true"}, code: 2,
			problem: []string{"nope.kubeconfig", "no such file"}, fix: []string{"check --kubeconfig"}},
		catalogueRow{id: "KUBE-BAD-CONTEXT", name: "--context names no context", args: []string{"exec", "-t", "deployment/web", "--kubeconfig", "kubeconfig", "--context", "prod", "--", "true"}, files: closedKC, code: 2,
			problem: []string{`context "prod" does not exist`}, fix: []string{"kubectl config get-contexts"}},
		catalogueRow{id: "KUBE-BAD-KUBECONFIG", name: "malformed kubeconfig", args: []string{"exec", "-t", "deployment/web", "--kubeconfig", "bad.kubeconfig", "--", "true"},
			files: map[string]string{"bad.kubeconfig": "apiVersion: v1\nclusters: [\n"}, code: 2,
			problem: []string{"bad.kubeconfig", "yaml: line"}, fix: []string{"fix the kubeconfig"}},
		catalogueRow{id: "KUBE-UNREACHABLE", name: "exec, closed port", args: []string{"exec", "-t", "deployment/web", "--kubeconfig", "kubeconfig", "--", "true"}, files: closedKC, code: 1,
			problem: []string{"the Kubernetes API server at https://{closed} does not answer", "connection refused"}, fix: []string{"check the context (kubectl config current-context) and your network"}},
		catalogueRow{id: "KUBE-UNREACHABLE", name: "ls, closed port", args: []string{"ls"}, files: closedKC, env: map[string]string{"KUBECONFIG": "{dir}/kubeconfig"}, code: 1,
			problem: []string{"the Kubernetes API server at https://{closed} does not answer"}, fix: []string{"check the context (kubectl config current-context) and your network"}},
		catalogueRow{id: "KUBE-CREDENTIALS", name: "exec, 401", args: []string{"exec", "-t", "deployment/web", "--kubeconfig", "kubeconfig", "--", "true"},
			files: map[string]string{"kubeconfig": kubeconfigFor("{api401}")}, code: 1,
			problem: []string{"the Kubernetes API server at {api401} refused your credentials"}, fix: []string{"log in again or refresh your kubeconfig"}},
		catalogueRow{id: "KUBE-CREDENTIALS", name: "ls, 401", args: []string{"ls", "-n", "demo"},
			files: map[string]string{"kubeconfig": kubeconfigFor("{api401}")}, env: map[string]string{"KUBECONFIG": "{dir}/kubeconfig"}, code: 1,
			problem: []string{"refused your credentials"}, fix: []string{"log in again or refresh your kubeconfig"}},
	)

	// ---- The agent ----
	add(
		catalogueRow{id: "AGENT-UNREACHABLE", name: "nothing listens", args: []string{"exec", "--agent-addr", "{closed}", "--", "true"}, code: 1,
			problem: []string{"connecting to the agent at {closed}", "connection refused"}, fix: []string{"is tether-agent running there? check --agent-addr"}},
		catalogueRow{id: "AGENT-UNREACHABLE", name: "not an agent: another protocol", args: []string{"exec", "--agent-addr", "{ssh}", "--", "true"}, code: 1,
			problem: []string{"reading the agent's welcome from {ssh}", "protocol frame too large"}, fix: []string{"is it a tether-agent? check the agent address"}},
		catalogueRow{id: "AGENT-UNREACHABLE", name: "not an agent: hangs up", args: []string{"exec", "--agent-addr", "{hangup}", "--", "true"}, code: 1,
			problem: []string{"the agent closed the connection during the handshake"}, fix: []string{"is {hangup} a tether-agent? check the agent address"}},
		catalogueRow{id: "AGENT-PROTOCOL", name: "older agent", args: []string{"exec", "--agent-addr", "{oldagent}", "--", "true"}, code: 1,
			problem: []string{fmt.Sprintf("the agent speaks protocol %d, but this tether needs %d or newer", protocol.MinVersion-1, protocol.MinVersion), "the agent comes from an older release"},
			fix:     []string{"use tether and tether-agent from the same release"}},
		catalogueRow{id: "AGENT-PROTOCOL", name: "newer agent refuses", args: []string{"exec", "--agent-addr", "{newagent}", "--", "true"}, code: 1,
			problem: []string{"the agent refused the session", fmt.Sprintf("the agent speaks protocol %d, this tether %d", protocol.Version+1, protocol.Version)},
			fix:     []string{"use tether and tether-agent from the same release"}},
		catalogueRow{id: "AGENT-TOKEN", name: "no token", args: []string{"exec", "--agent-addr", "{tokenagent}", "--", "true"}, code: 1,
			problem: []string{"the agent refused the session: wrong or missing agent token"}, fix: []string{"set TETHER_AGENT_TOKEN"}},
		catalogueRow{id: "AGENT-TOKEN", name: "wrong token", args: []string{"exec", "--agent-addr", "{tokenagent}", "--", "true"},
			env: map[string]string{"TETHER_AGENT_TOKEN": "guess"}, code: 1,
			problem: []string{"wrong or missing agent token"}, fix: []string{"set TETHER_AGENT_TOKEN"}},
	)

	// ---- The command ----
	local := map[string]string{"t.yaml": "fs:\n  mode: local\nenv:\n  enabled: false\ndns:\n  enabled: false\n"}
	add(
		catalogueRow{id: "CMD-NOT-FOUND", name: "no such command", args: []string{"exec", "-q", "-f", "t.yaml", "--agent-addr", "{agent}", "--", "tether-no-such-command"}, files: local, code: 127,
			problem: []string{"tether-no-such-command: command not found"}, fix: []string{"check the name and PATH"}},
		catalogueRow{id: "PORT-TAKEN-LOCAL", name: "the program binds a busy port", args: []string{"exec", "--progress", "off", "-f", "t.yaml", "--agent-addr", "{agent}", "--", "{helper}", helperListen, "{taken}"}, files: local, code: 0,
			problem: []string{"warning", "port {taken} is taken on this machine: the program listens on port"}, fix: []string{"set incoming.listen_ports to choose the port"}},
	)
	return rows
}

// TestCatalogueIDs keeps the IDs tidy: each is UPPER-KEBAB and its rows are
// together.
func TestCatalogueIDs(t *testing.T) {
	var order []string
	for _, r := range catalogueRows() {
		if !regexp.MustCompile(`^[A-Z]+(-[A-Z0-9]+)+$`).MatchString(r.id) {
			t.Errorf("row %q: ID %q is not UPPER-KEBAB", r.name, r.id)
		}
		if n := len(order); n == 0 || order[n-1] != r.id {
			if slices.Contains(order, r.id) {
				t.Errorf("rows of %s are not together (again at %q)", r.id, r.name)
			}
			order = append(order, r.id)
		}
	}
}
