package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Streams{In: nil, Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KUBECONFIG", filepath.Join(dir, "no-such-kubeconfig"))
	kubeconfig := writeFile(t, dir, "kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: demo}}]
current-context: ctx
`)
	good := writeFile(t, dir, "good.yaml", "fs:\n  mode: write\nenv:\n  exclude: [SECRET_*]\n")
	bad := writeFile(t, dir, "bad.yaml", "fs:\n  mdoe: write\n")
	badRegex := writeFile(t, dir, "bad.json", `{"fs": {"read_only": ["("]}}`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"version", []string{"version"}, 0, "tether ", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"exec", "--bogus", "--", "true"}, 2, "", "unknown flag: --bogus"},
		{"exec without command", []string{"exec", "--agent-addr", "127.0.0.1:1"}, 2, "", "exec needs a command"},
		{"exec without agent", []string{"exec", "--", "true"}, 2, "", "nothing to run against"},
		{"exec with k8s target, no kube context", []string{"exec", "-t", "deployment/api", "--", "true"}, 2, "", "no Kubernetes context"},
		{"exec with a bad target", []string{"exec", "-t", "node/api", "--kubeconfig", kubeconfig, "--", "true"}, 2, "", `unknown kind "node"`},
		{"exec with an unreachable API server", []string{"exec", "-t", "deployment/api", "--kubeconfig", kubeconfig, "--", "true"}, 1, "", "does not answer"},
		{"exec with a bad progress mode", []string{"exec", "--progress", "fancy", "-t", "pod/x", "--", "true"}, 2, "", "want tty, plain, json or off"},
		{"exec with bad config", []string{"exec", "-f", bad, "--agent-addr", "127.0.0.1:1", "--", "true"}, 2, "", `bad.yaml:2:3: unknown key "fs.mdoe"`},
		{"exec with missing config", []string{"exec", "-f", filepath.Join(dir, "nope.json"), "--agent-addr", "127.0.0.1:1", "--", "true"}, 2, "", "nope.json"},
		{"exec with unreachable agent", []string{"exec", "--agent-addr", "127.0.0.1:1", "--", "true"}, 1, "", "connecting to the agent at 127.0.0.1:1"},
		{"verify good", []string{"config", "verify", "-f", good}, 0, "good.yaml: ok", ""},
		{"verify bad key", []string{"config", "verify", "-f", bad}, 2, "", `did you mean "fs.mode"`},
		{"verify bad regex", []string{"config", "verify", "-f", badRegex}, 2, "", `"fs.read_only[0]"`},
		{"verify without file", []string{"config", "verify"}, 2, "", "needs a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
		})
	}
}

func TestConfigSchema(t *testing.T) {
	code, out, _ := runCLI(t, "config", "schema")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var schema map[string]any
	if err := json.Unmarshal([]byte(out), &schema); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if !strings.Contains(out, `"fs"`) || !strings.Contains(out, `"outgoing"`) {
		t.Fatalf("schema lacks top-level keys:\n%s", out[:min(len(out), 400)])
	}
}

// TestDefaultConfigFile: without -f, .tether/config.* in the working
// directory is loaded (here a broken one, so the error proves it was read).
func TestDefaultConfigFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, ".tether/config.toml", "[dns]\nenabled = \"yes\"\n")
	t.Chdir(dir)
	code, _, errOut := runCLI(t, "exec", "--agent-addr", "127.0.0.1:1", "--", "true")
	if code != 2 || !strings.Contains(errOut, ".tether/config.toml:2") || !strings.Contains(errOut, "dns.enabled") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
