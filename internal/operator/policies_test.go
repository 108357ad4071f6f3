package operator

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	policiesv1 "github.com/tether-dev/tether/api/policies/v1alpha1"
	"github.com/tether-dev/tether/internal/policy"
)

func TestSelects(t *testing.T) {
	web := policyTarget{Kind: "deployment", Name: "payments-api", Labels: map[string]string{"team": "pay", "tier": "db"}}
	for _, tc := range []struct {
		name string
		spec policiesv1.PolicySpec
		want bool
		err  string
	}{
		{"no selection: all", policiesv1.PolicySpec{}, true, ""},
		{"glob", policiesv1.PolicySpec{TargetPath: "deployment/payments-*"}, true, ""},
		{"glob with a short kind", policiesv1.PolicySpec{TargetPath: "deploy/payments-*"}, true, ""},
		{"kind in capitals", policiesv1.PolicySpec{TargetPath: "Deployment/payments-api"}, true, ""},
		{"any kind", policiesv1.PolicySpec{TargetPath: "*/payments-api"}, true, ""},
		{"other kind", policiesv1.PolicySpec{TargetPath: "statefulset/payments-*"}, false, ""},
		{"other name", policiesv1.PolicySpec{TargetPath: "deployment/orders-*"}, false, ""},
		{"* does not cross /", policiesv1.PolicySpec{TargetPath: "*"}, false, ""},
		{"selector", policiesv1.PolicySpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "pay"}}}, true, ""},
		{"selector not matching", policiesv1.PolicySpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "ops"}}}, false, ""},
		{"both must match", policiesv1.PolicySpec{TargetPath: "deployment/orders", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "pay"}}}, false, ""},
		{"bad glob", policiesv1.PolicySpec{TargetPath: "deployment/[x"}, false, "not a glob"},
		{"bad selector", policiesv1.PolicySpec{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}}, false, "selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := selects(tc.spec, web)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("selects = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestRulesOf: every field of a PolicySpec reaches the agent's Rules.
func TestRulesOf(t *testing.T) {
	spec := policiesv1.PolicySpec{
		TargetPath: "deployment/x",
		Block:      []policiesv1.BlockedFeature{policy.BlockSteal, policy.BlockFSWrite},
		Incoming:   &policiesv1.IncomingPolicy{RequireHeaderFilter: "^x-tether-user: .+$"},
		Env:        &policiesv1.EnvPolicy{Exclude: []string{"*_PASSWORD"}, Mask: []string{"DB_*"}},
		FS:         &policiesv1.FSPolicy{ReadOnly: []string{"^/app/config"}, Local: []string{"^/tmp"}, NotFound: []string{"^/secret"}},
		Outgoing: &policiesv1.OutgoingPolicy{
			Allow: []policiesv1.OutgoingRule{{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}, Port: 443, Protocol: "tcp"}},
			Block: []policiesv1.OutgoingRule{{Hostname: "^redis"}},
		},
	}
	r := rulesOf("Policy a/b", spec)
	want := policy.Rules{Name: "Policy a/b", Block: []string{"steal", "fs-write"}, RequireHeaderFilter: "^x-tether-user: .+$",
		EnvExclude: []string{"*_PASSWORD"}, EnvMask: []string{"DB_*"},
		FSReadOnly: []string{"^/app/config"}, FSLocal: []string{"^/tmp"}, FSNotFound: []string{"^/secret"},
		OutgoingAllow: []policy.OutgoingRule{{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}, Port: 443, Protocol: "tcp"}},
		OutgoingBlock: []policy.OutgoingRule{{Hostname: "^redis"}}}
	if !sameRules([]policy.Rules{r}, []policy.Rules{want}) {
		t.Fatalf("rulesOf = %+v\nwant %+v", r, want)
	}
	// Every blockable feature of the API is one the agent knows.
	for _, f := range policy.Features {
		if !policy.Blockable(f) {
			t.Errorf("%s", f)
		}
	}
}
