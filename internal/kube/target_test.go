package kube

import (
	"slices"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    TargetSpec
		wantErr string
	}{
		{"targetless", TargetSpec{Kind: KindTargetless}, ""},
		{"deployment/ip-visit-counter", TargetSpec{Kind: KindDeployment, Name: "ip-visit-counter"}, ""},
		{"deploy/api", TargetSpec{Kind: KindDeployment, Name: "api"}, ""},
		{"pod/api-7d9f/container/app", TargetSpec{Kind: KindPod, Name: "api-7d9f", Container: "app"}, ""},
		{"sts/db/container/main", TargetSpec{Kind: KindStatefulSet, Name: "db", Container: "main"}, ""},
		{"api-7d9f", TargetSpec{Kind: KindPod, Name: "api-7d9f"}, ""},
		{"cronjob/nightly", TargetSpec{Kind: KindCronJob, Name: "nightly"}, ""},
		{"rollout/web", TargetSpec{Kind: KindRollout, Name: "web"}, ""},
		{"service/web", TargetSpec{Kind: KindService, Name: "web"}, ""},
		{"nodes/x", TargetSpec{}, "unknown kind \"nodes\""},
		{"svc/web/container/app", TargetSpec{Kind: KindService, Name: "web", Container: "app"}, ""},
		{"", TargetSpec{}, "empty target"},
		{"daemonset/agent", TargetSpec{}, `unknown kind "daemonset"`}, // only a pod's owner (--follow-owner)
		{"deployment/", TargetSpec{}, "empty name"},
		{"deployment/API", TargetSpec{}, "not a valid Kubernetes name"},
		{"pod/a/b", TargetSpec{}, "KIND/NAME/container/CONTAINER"},
		{"pod/a/container/", TargetSpec{}, "empty name"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTarget(%q) = %v, want error %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if back, err := ParseTarget(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), back, err)
		}
	}
}

func TestClosest(t *testing.T) {
	got := closest("ip-visit-countr", []string{"redis", "ip-visit-counter", "ip-info", "kafka"})
	if len(got) == 0 || got[0] != "ip-visit-counter" {
		t.Fatalf("closest = %v", got)
	}
	if got := closest("zzzzzz", []string{"redis", "api"}); len(got) != 0 {
		t.Fatalf("closest of an unrelated name = %v", got)
	}
	if got := closest("api", []string{"api-v2", "web"}); !slices.Contains(got, "api-v2") {
		t.Fatalf("closest by containment = %v", got)
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"targetless", "deploy/x", "pod/a/container/b", "a/b/c/d/e", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			return
		}
		back, err := ParseTarget(got.String())
		if err != nil || back != got {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v %v", s, got, back, err)
		}
	})
}

func TestSelectorTarget(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"app=web", "pods -l app=web", ""},
		{" app=web,tier!=db ", "pods -l app=web,tier!=db", ""},
		{"", "", "empty label selector"},
		{"app in (a", "", `label selector "app in (a": unable to parse`},
	} {
		got, err := SelectorTarget(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("SelectorTarget(%q) error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || got.String() != tc.want || got.Kind != KindSelector):
			t.Errorf("SelectorTarget(%q) = %v %v, want %s", tc.in, got, err, tc.want)
		}
	}
}
