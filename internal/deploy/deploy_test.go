package deploy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/ from the objects")

// TestCheckedIn: deploy/'s manifest and Helm template are what the
// objects render to (tether operator install applies the same).
func TestCheckedIn(t *testing.T) {
	for _, f := range []struct {
		path   string
		render func() ([]byte, error)
	}{
		{"../../deploy/tether-operator.yaml", Manifest},
		{"../../deploy/helm/tether-operator/templates/tether-operator.yaml", HelmTemplate},
		{"../../deploy/helm/tether-operator/crds/tether.yaml", HelmCRDs},
	} {
		got, err := f.render()
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			os.MkdirAll(filepath.Dir(f.path), 0o755)
			if err := os.WriteFile(f.path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(f.path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale (%v): regenerate it with go test ./internal/deploy -update", f.path, err)
		}
	}
}

// TestObjects: what a platform team relies on.
func TestObjects(t *testing.T) {
	if _, err := Objects(Options{}); err == nil {
		t.Error("no images: want an error")
	}
	objs, err := Objects(Options{Image: "op", AgentImage: "ag"})
	if err != nil {
		t.Fatal(err)
	}
	us, err := Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, u := range us {
		kinds[u.GetKind()]++
		if u.GetLabels()[LabelPartOf] != PartOf {
			t.Errorf("%s lacks the label uninstall removes by", Describe(u))
		}
		if _, err := GVR(u); err != nil {
			t.Error(err)
		}
	}
	for kind, n := range map[string]int{"Namespace": 1, "APIService": 1, "Deployment": 1, "Service": 1, "ClusterRole": 3, "ClusterRoleBinding": 2, "CustomResourceDefinition": 3} {
		if kinds[kind] != n {
			t.Errorf("%d %s, want %d", kinds[kind], kind, n)
		}
	}
	// tether-user is nothing privileged.
	y, _ := YAML(objs)
	user := string(y)[strings.Index(string(y), "name: "+UserRole):]
	user = user[:strings.Index(user, "---")]
	for _, bad := range []string{"exec", "portforward", "ephemeralcontainers", "create\n  - delete", "secrets"} {
		if strings.Contains(user, bad) {
			t.Errorf("ClusterRole %s grants %q:\n%s", UserRole, bad, user)
		}
	}
}

// TestHelmChartComplete: the chart (templates and crds/) holds every
// object of the manifest but the Namespace, which Helm creates.
func TestHelmChartComplete(t *testing.T) {
	kinds := func(render ...func() ([]byte, error)) []string {
		var out []string
		for _, r := range render {
			b, err := r()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range kindLine.FindAllStringSubmatch(string(b), -1) {
				if m[1] != "Namespace" {
					out = append(out, m[1])
				}
			}
		}
		slices.Sort(out)
		return out
	}
	manifest, chart := kinds(Manifest), kinds(HelmTemplate, HelmCRDs)
	if !slices.Equal(manifest, chart) {
		t.Errorf("the Helm chart's kinds %v, the manifest's %v (Namespace aside)", chart, manifest)
	}
}

var kindLine = regexp.MustCompile(`(?m)^kind: (\S+)$`)
