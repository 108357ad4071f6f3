package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/test/harness"
)

// TestEnvFromPod: the process gets the pod's variables, but PATH and HOME
// stay local (built-in exclude list).
func TestEnvFromPod(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	vars := []string{"DEMO_GREETING", "REDIS_HOST", "PATH", "HOME"}

	r := f.tether(t, "", append([]string{probe, "env"}, vars...)...)
	wantStdout(t, r,
		"DEMO_GREETING=hello-from-pod\n",
		"REDIS_HOST=redis\n",
		"PATH="+os.Getenv("PATH")+"\n",
		"HOME="+harness.LocalHome(t)+"\n",
	)
	wantStdoutLacks(t, r, "PATH=/bin\n", "HOME=/root\n")

	// Without tether the pod's variables are not there.
	r = local(t, append([]string{probe, "env"}, vars...)...)
	wantStdout(t, r, "unset DEMO_GREETING\n", "unset REDIS_HOST\n")
}

// TestEnvConfig: each env.* setting changes what the process sees.
func TestEnvConfig(t *testing.T) {
	f := start(t)
	probe := harness.Probe(t)
	envCmd := []string{probe, "env", "DEMO_GREETING", "REDIS_HOST", "REDIS_PORT", "EXTRA_VAR"}

	envFile := filepath.Join(t.TempDir(), "override.env")
	if err := os.WriteFile(envFile, []byte("# dotenv\nDEMO_GREETING=from-env-file\nEXTRA_VAR=\"42\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		config string
		want   []string
		lacks  []string
	}{
		{
			name:   "override",
			config: `{"env": {"override": {"DEMO_GREETING": "overridden", "EXTRA_VAR": "x"}}}`,
			want:   []string{"DEMO_GREETING=overridden\n", "EXTRA_VAR=x\n", "REDIS_HOST=redis\n"},
		},
		{
			name:   "exclude",
			config: `{"env": {"exclude": ["DEMO_GREETING"]}}`,
			want:   []string{"unset DEMO_GREETING\n", "REDIS_HOST=redis\n"},
		},
		{
			name:   "exclude-wildcard",
			config: `{"env": {"exclude": ["REDIS_*"]}}`,
			want:   []string{"DEMO_GREETING=hello-from-pod\n", "unset REDIS_HOST\n", "unset REDIS_PORT\n"},
		},
		{
			name:   "include",
			config: `{"env": {"include": ["REDIS_*"]}}`,
			want:   []string{"unset DEMO_GREETING\n", "REDIS_HOST=redis\n", "REDIS_PORT=6379\n"},
		},
		{
			name:   "unset",
			config: `{"env": {"unset": ["REDIS_HOST"]}}`,
			want:   []string{"DEMO_GREETING=hello-from-pod\n", "unset REDIS_HOST\n", "REDIS_PORT=6379\n"},
		},
		{
			name:   "env_file",
			config: `{"env": {"env_file": "` + envFile + `"}}`,
			want:   []string{"DEMO_GREETING=from-env-file\n", "EXTRA_VAR=42\n", "REDIS_HOST=redis\n"},
		},
		{
			name:   "disabled",
			config: `{"env": {"enabled": false}}`,
			want:   []string{"unset DEMO_GREETING\n", "unset REDIS_HOST\n"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStdout(t, f.tether(t, c.config, envCmd...), c.want...)
		})
	}
}
