// Package e2e runs tether against a real Kubernetes cluster: the local one
// from hack/cluster (make test brings it up) or the cluster of
// $TETHER_E2E_KUBECONFIG. The tests need TETHER_E2E=1 and root (the
// supervisor and the local cluster both do).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/tether-dev/tether/test/harness"
)

// defaultKubeconfig is the local cluster's (hack/cluster).
const defaultKubeconfig = "/var/lib/tether-cluster/admin.kubeconfig"

// agentImage is the agent image `make images` imports into the cluster.
const agentImage = "tether.local/tether-agent:dev"

var (
	kubeconfig string
	restCfg    *rest.Config
	client     kubernetes.Interface
	dyn        dynamic.Interface
	binDir     string
	tetherBin  string
	counterBin string
	// consumerBin is the demo's ip-visit-consumer, run locally under tether.
	consumerBin string
	root        string
)

func TestMain(m *testing.M) {
	if port := os.Getenv(localServerEnv); port != "" {
		runLocalServer(port) // the fault tests' local app, run under tether
	}
	if os.Getenv("TETHER_E2E") != "1" {
		fmt.Println("e2e: skipped (set TETHER_E2E=1 with a cluster up: make test does both)")
		os.Exit(m.Run())
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

func setup() error {
	kubeconfig = os.Getenv("TETHER_E2E_KUBECONFIG")
	if kubeconfig == "" {
		kubeconfig = defaultKubeconfig
	}
	var err error
	restCfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w (bring the local cluster up with make cluster-up)", kubeconfig, err)
	}
	if client, err = kubernetes.NewForConfig(restCfg); err != nil {
		return err
	}
	if dyn, err = dynamic.NewForConfig(restCfg); err != nil {
		return err
	}
	if root, err = harness.FindModuleRoot(); err != nil {
		return err
	}
	if binDir, err = os.MkdirTemp("", "tether-e2e-"); err != nil {
		return err
	}
	tetherBin = filepath.Join(binDir, "tether")
	counterBin = filepath.Join(binDir, "ip-visit-counter")
	consumerBin = filepath.Join(binDir, "ip-visit-consumer")
	for pkg, out := range map[string]string{"./cmd/tether": tetherBin, "./examples/ip-visit-counter/cmd/ip-visit-counter": counterBin, "./examples/ip-visit-counter/cmd/ip-visit-consumer": consumerBin} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return nil
}

func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("TETHER_E2E") != "1" {
		t.Skip("set TETHER_E2E=1 with a cluster up (make test does)")
	}
}

// apply creates the objects of a multi-document YAML file (existing ones
// are left as they are).
func apply(t *testing.T, manifest []byte) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, doc := range bytes.Split(manifest, []byte("\n---")) {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("manifest: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("manifest %s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Create(context.Background(), &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s: %v", gvk.Kind, obj.GetName(), err)
		}
	}
}

// waitDeployments waits until every deployment of ns is available.
func waitDeployments(t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		deps, err := client.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
		if err == nil {
			pending := []string{}
			for _, d := range deps.Items {
				if !available(&d) {
					pending = append(pending, d.Name)
				}
			}
			if len(pending) == 0 && len(deps.Items) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployments not available in %v: %v\n%s", timeout, pending, describePods(ns))
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func available(d *appsv1.Deployment) bool {
	return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas >= *d.Spec.Replicas && d.Status.UpdatedReplicas >= *d.Spec.Replicas
}

func describePods(ns string) string {
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "  pod %s: %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " [%s %s: %s]", cs.Name, w.Reason, w.Message)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// serviceURL returns http://CLUSTER-IP:PORT of a service (the node, where
// the tests run, reaches ClusterIPs through kube-proxy).
func serviceURL(t *testing.T, ns, name string) string {
	t.Helper()
	svc, err := client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
}

// tetherProc is a running `tether exec`.
type tetherProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
}

func (p *tetherProc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *tetherProc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// startTether runs tether with args; it is stopped (SIGINT, then SIGKILL)
// at the end of the test.
func startTether(t *testing.T, dir string, args ...string) *tetherProc {
	t.Helper()
	return startTetherEnv(t, dir, nil, args...)
}

// startTetherEnv is startTether with env added to the environment.
func startTetherEnv(t *testing.T, dir string, env []string, args ...string) *tetherProc {
	t.Helper()
	p := &tetherProc{done: make(chan struct{})}
	p.cmd = exec.Command(tetherBin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), env...)
	p.cmd.Stdout = harness.LockedWriter{Mu: &p.mu, B: &p.stdout}
	p.cmd.Stderr = harness.LockedWriter{Mu: &p.mu, B: &p.stderr}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends tether with SIGINT (its child exits, the session closes).
func (p *tetherProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("tether did not stop on SIGINT within 15s\nstderr:\n%s", p.Stderr())
	}
}

// waitStderr waits until tether's stderr contains s.
func (p *tetherProc) waitStderr(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	p.waitStderrAny(t, timeout, s)
}

// waitStderrAny waits until tether's stderr has one of alts.
func (p *tetherProc) waitStderrAny(t *testing.T, timeout time.Duration, alts ...string) {
	t.Helper()
	s := strings.Join(alts, `" or "`)
	has := func() bool {
		for _, a := range alts {
			if strings.Contains(p.Stderr(), a) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(timeout)
	for !has() {
		select {
		case <-p.done:
			t.Fatalf("tether exited (%v) before printing %q\nstderr:\n%s\nstdout:\n%s", p.cmd.ProcessState, s, p.Stderr(), p.Stdout())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tether did not print %q within %v\nstderr:\n%s", s, timeout, p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runTether runs tether against the test cluster to completion and
// returns its output and exit code.
func runTether(t *testing.T, dir string, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	return runTetherEnv(t, dir, timeout, []string{"KUBECONFIG=" + kubeconfig}, args...)
}

// counterAnswer is ip-visit-counter's JSON answer.
type counterAnswer struct {
	IP     string `json:"ip"`
	Count  int64  `json:"count"`
	Text   string `json:"text"`
	IPInfo string `json:"ip_info"`
}

// waitHTTP waits until url answers (kube-proxy programs a new Service a
// moment after its pods are ready).
func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer within %v: %v", url, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func getCounter(t *testing.T, url, user string) counterAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/", nil)
	if user != "" {
		req.Header.Set("X-Tether-User", user)
	}
	// A new connection each time, as curl in the demo: a keep-alive
	// connection opened before a session reaches it only once handed over
	// (docs/handover.md), up to 10 s later.
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (user %q): %v", url, user, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a counterAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("GET %s (user %q): status %d, body %q", url, user, resp.StatusCode, b)
	}
	return a
}

func writeConfig(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "tether.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// noLeftovers waits until no tether agent pods or jobs remain in ns.
func noLeftovers(t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods, _ := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tether-agent"})
		jobs, _ := client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=tether-agent"})
		var live []string
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodPending {
				live = append(live, "pod/"+p.Name)
			}
		}
		for _, j := range jobs.Items {
			live = append(live, "job/"+j.Name)
		}
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftovers in %s after %v: %v", ns, timeout, live)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// lines scans s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
