package session

import (
	"slices"
	"testing"

	"github.com/tether-dev/tether/internal/config"
)

func TestBuildEnv(t *testing.T) {
	local := []string{"PATH=/usr/bin", "HOME=/home/dev", "EDITOR=vim", "SHARED=local"}
	remote := []string{"PATH=/app/bin", "HOME=/root", "DB_HOST=redis", "SHARED=remote", "LD_PRELOAD=/x.so", "API_KEY=k", "KUBERNETES_SERVICE_HOST=10.96.0.1"}
	tests := []struct {
		name    string
		cfg     config.Env
		enabled bool
		file    map[string]string
		want    []string
	}{
		{
			name: "default", enabled: true,
			want: []string{"PATH=/usr/bin", "HOME=/home/dev", "EDITOR=vim", "SHARED=remote", "DB_HOST=redis", "API_KEY=k", "KUBERNETES_SERVICE_HOST=10.96.0.1"},
		},
		{
			name: "disabled", enabled: false,
			want: local,
		},
		{
			name: "include wildcard", enabled: true, cfg: config.Env{Include: []string{"DB_*", "PATH"}},
			want: []string{"PATH=/app/bin", "HOME=/home/dev", "EDITOR=vim", "SHARED=local", "DB_HOST=redis"},
		},
		{
			name: "exclude", enabled: true, cfg: config.Env{Exclude: []string{"API_?EY", "KUBERNETES_*"}},
			want: []string{"PATH=/usr/bin", "HOME=/home/dev", "EDITOR=vim", "SHARED=remote", "DB_HOST=redis"},
		},
		{
			name: "override, unset and env file", enabled: true,
			cfg:  config.Env{Override: map[string]string{"DB_HOST": "localhost", "NEW": "1"}, Unset: []string{"EDITOR", "API_KEY"}},
			file: map[string]string{"SHARED": "file", "FROM_FILE": "yes"},
			want: []string{"PATH=/usr/bin", "HOME=/home/dev", "SHARED=file", "DB_HOST=localhost", "KUBERNETES_SERVICE_HOST=10.96.0.1", "FROM_FILE=yes", "NEW=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BuildEnv(local, remote, tt.cfg, tt.enabled, tt.file)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
