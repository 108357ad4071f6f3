package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const demoNS = "tether-demo"

// deployDemo deploys examples/ip-visit-counter and waits for it.
func deployDemo(t *testing.T) {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(root, "examples/ip-visit-counter/deploy/demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, manifest)
	waitDeployments(t, demoNS, 3*time.Minute)
}

// TestSeedDemo is the talk's demo, scripted: the deployed ip-visit-counter
// answers; the developer runs a changed copy locally under tether with a
// header filter; requests without the header are still answered by the
// cluster, requests with it by the local code, which reads the pod's file
// and increments the same Redis counter, so the count continues.
func TestSeedDemo(t *testing.T) {
	requireE2E(t)
	deployDemo(t)
	url := serviceURL(t, demoNS, "ip-visit-counter")
	waitHTTP(t, url, 30*time.Second)
	first := getCounter(t, url, "")
	if first.Text != "remote is fun hi" {
		t.Fatalf("the deployed service answered %+v", first)
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `target: deployment/ip-visit-counter
namespace: tether-demo
agent:
  image: `+agentImage+`
  linger: 3s
incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: e2e$"
`)
	p := startTether(t, dir, "exec", "-f", cfg, "--progress", "plain", "--", counterBin, "--greeting=hi from tether")
	p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)

	cluster := getCounter(t, url, "")
	if cluster.Text != "remote is fun hi" || cluster.Count != first.Count+1 {
		t.Fatalf("without the header: %+v, want the cluster's answer with count %d", cluster, first.Count+1)
	}
	local := getCounter(t, url, "e2e")
	if local.Text != "remote is fun hi from tether" {
		t.Fatalf("with the header: %+v, want the local code's answer (the pod's file + the new greeting)", local)
	}
	if local.Count != cluster.Count+1 {
		t.Fatalf("the local code's count is %d, want %d: it must use the cluster's Redis", local.Count, cluster.Count+1)
	}
	if local.IP != cluster.IP {
		t.Fatalf("the local code saw client %s, the cluster %s: the original client address must reach the local app", local.IP, cluster.IP)
	}
	if !strings.Contains(local.IPInfo, "private network") {
		t.Fatalf("the local code's ip-info answer %q: it must reach the cluster's ip-info service", local.IPInfo)
	}
	again := getCounter(t, url, "")
	if again.Text != "remote is fun hi" || again.Count != local.Count+1 {
		t.Fatalf("after the stolen request: %+v", again)
	}
	p.stop(t)
	if after := getCounter(t, url, "e2e"); after.Text != "remote is fun hi" {
		t.Fatalf("after tether ended, the header's request was answered %+v, want the cluster", after)
	}
	noLeftovers(t, demoNS, 60*time.Second)
}
