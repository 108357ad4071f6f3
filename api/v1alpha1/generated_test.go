package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGenerated: the checked-in generated code (deepcopy, CRDs, OpenAPI) is
// what hack/generate.sh makes from the types now.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the generators are fetched and built (about a minute)")
	}
	out := t.TempDir()
	cmd := exec.Command("../../hack/generate.sh")
	cmd.Env = append(os.Environ(), "GENERATE_DIR="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, b)
	}
	for _, f := range []string{"api/v1alpha1/zz_generated.deepcopy.go", "api/queues/v1alpha1/zz_generated.deepcopy.go", "internal/deploy/crds/queues.tether.dev_queuesplits.yaml", "internal/operator/apiserver/openapi/zz_generated.openapi.go"} {
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("../..", f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale (%v): run hack/generate.sh", f, err)
		}
	}
}
