package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/policy"
)

func TestCheckConfig(t *testing.T) {
	rules := []policy.Rules{
		{Name: "ClusterPolicy no-unfiltered", Block: []string{policy.BlockStealWithoutFilter}},
		{Name: "Policy shop/user", RequireHeaderFilter: `^x-tether-user: .+$`, EnvExclude: []string{"*_PASSWORD"}},
		{Name: "Policy shop/ro", Block: []string{policy.BlockFSWrite, policy.BlockQueueSplit}},
	}
	for _, tc := range []struct {
		name string
		cfg  config.Config
		want []string // the refusing policy of each refusal
	}{
		{"mirror, read", config.Config{}, nil},
		{"unfiltered steal", config.Config{Incoming: config.Incoming{Mode: "steal"}}, []string{"ClusterPolicy no-unfiltered"}},
		{"another header", config.Config{Incoming: config.Incoming{Mode: "steal", HTTPFilter: config.HTTPFilter{HeaderFilter: "x-other: me"}}}, []string{"Policy shop/user"}},
		{"conforming", config.Config{Incoming: config.Incoming{Mode: "steal", HTTPFilter: config.HTTPFilter{HeaderFilter: "x-tether-user: me"}}}, nil},
		{"conforming on some ports", config.Config{Incoming: config.Incoming{Mode: "steal", HTTPFilter: config.HTTPFilter{HeaderFilter: "x-tether-user: me", Ports: []uint16{80}}}}, []string{"ClusterPolicy no-unfiltered"}},
		{"an excluded variable", config.Config{Env: config.Env{Include: []string{"DB_PASSWORD", "DB_*", "HOME"}}}, []string{"Policy shop/user"}},
		{"fs write", config.Config{FS: config.FS{Mode: "write"}}, []string{"Policy shop/ro"}},
		{"split", config.Config{SplitQueues: map[string]config.SplitQueue{"q": {}}}, []string{"Policy shop/ro"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkConfig(rules, &tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var by []string
			for _, r := range got {
				by = append(by, r.Policy)
			}
			if strings.Join(by, ",") != strings.Join(tc.want, ",") {
				t.Errorf("refused by %q, want %q (%v)", by, tc.want, got)
			}
		})
	}
	var b bytes.Buffer
	spec, _ := kube.ParseTarget("deployment/web")
	got, _ := checkConfig(rules, &config.Config{Incoming: config.Incoming{Mode: "steal"}})
	printPolicies(&b, "shop", spec, &v1alpha1.TargetPolicy{Pod: "web-1"}, rules, got)
	for _, want := range []string{"Policies that apply to deployment/web in shop (pod web-1):", "block: steal-without-filter",
		"incoming: a steal's HTTP filter must match ^x-tether-user: .+$", "Your config would be refused:",
		"ClusterPolicy no-unfiltered refuses a steal without an HTTP filter (block: steal-without-filter)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
