// Package kube benchmarks tether on a real Kubernetes cluster (the local
// one of hack/cluster, whose only node is this machine), against the
// paths a developer would otherwise use: kubectl exec, kubectl
// port-forward, the same client inside the cluster (in a pod's network
// namespace: the physical limit), the same programs without tether.
//
// The benchmarks run with TETHER_BENCH=1 as root (make bench, through
// hack/bench.sh); they create the namespace bench-kube, delete it at the
// end, and write bench/results/NAME.{txt,json}. The cluster is that of
// $TETHER_BENCH_KUBECONFIG, by default the local one.
package kube

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/test/bench/report"

	"github.com/tether-dev/tether/test/harness"
)

const (
	defaultKubeconfig = "/var/lib/tether-cluster/admin.kubeconfig"
	agentImage        = "tether.local/tether-agent:dev"
	benchImage        = "tether.local/tether-bench:dev"
	// ns is the benchmarks' namespace (bench-*: the e2e tests own e2e-*).
	ns            = "bench-kube"
	agentSelector = "app.kubernetes.io/name=tether-agent"
)

var (
	kubeconfig string
	kubectl    string
	client     kubernetes.Interface
	root       string
	binDir     string
	// Static binaries built for this run.
	tetherBin, clientBin, serverBin, loopBin string
)

func TestMain(m *testing.M) {
	if os.Getenv("TETHER_BENCH") != "1" {
		fmt.Println("kube benchmarks: skipped (TETHER_BENCH=1 with the cluster up: make bench does both)")
		os.Exit(m.Run())
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "kube benchmarks: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := deleteNamespace(ns); err != nil {
		fmt.Fprintf(os.Stderr, "kube benchmarks: %v\n", err)
		code = 1
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

func setup() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("need root (nsenter into pods, /proc of the cluster's processes, the supervisor)")
	}
	kubeconfig = os.Getenv("TETHER_BENCH_KUBECONFIG")
	if kubeconfig == "" {
		kubeconfig = defaultKubeconfig
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w (bring the local cluster up with make cluster-up)", kubeconfig, err)
	}
	if client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("the cluster of %s is not ready: %w (make cluster-up)", kubeconfig, err)
	}
	if kubectl, err = exec.LookPath("kubectl"); err != nil {
		kubectl = "/var/lib/tether-cluster/bin/kubectl"
		if _, err := os.Stat(kubectl); err != nil {
			return fmt.Errorf("kubectl not found on PATH nor at %s (source hack/cluster/env.sh)", kubectl)
		}
	}
	if root, err = harness.FindModuleRoot(); err != nil {
		return err
	}
	if binDir, err = os.MkdirTemp("", "tether-bench-"); err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	for _, b := range []struct {
		pkg string
		out *string
	}{
		{"./cmd/tether", &tetherBin},
		{"./test/bench/benchclient", &clientBin},
		{"./test/bench/benchserver", &serverBin},
		{"./test/bench/loop", &loopBin},
	} {
		*b.out = filepath.Join(binDir, filepath.Base(b.pkg))
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "netgo,osusergo", "-o", *b.out, b.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// benchEnabled skips t unless TETHER_BENCH=1 (TestMain has then checked
// the cluster and built the binaries).
func benchEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv("TETHER_BENCH") != "1" {
		t.Skip("benchmarks run with TETHER_BENCH=1 (make bench)")
	}
}

// deleteNamespace deletes name and waits until it is gone.
func deleteNamespace(name string) error {
	ctx := context.Background()
	err := client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still exists 3 minutes after its deletion", name)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// writeResults writes bench/results/NAME.{txt,json} and prints the text.
func writeResults(t *testing.T, f report.File) {
	t.Helper()
	f.Env = report.CurrentEnv(root)
	text, err := report.Write(filepath.Join(root, "bench", "results"), f)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Print(text)
}

// run runs a command to completion and returns its stdout; an error
// carries its stderr.
func run(timeout time.Duration, env []string, argv ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return out.String(), d, fmt.Errorf("%s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	return out.String(), d, nil
}

// mustRunCPU is mustRun that also returns the CPU time (user+system) of
// the command and of the children it waited for.
func mustRunCPU(t *testing.T, timeout time.Duration, env []string, argv ...string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	return out.String(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// mustRun is run that fails t.
func mustRun(t *testing.T, timeout time.Duration, env []string, argv ...string) (string, time.Duration) {
	t.Helper()
	out, d, err := run(timeout, env, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out, d
}

// kubeEnv is the environment of kubectl and tether: the bench cluster.
func kubeEnv() []string { return []string{"KUBECONFIG=" + kubeconfig} }

// proc is a background process (a tether session, a port-forward).
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
}

// start runs argv in the background, in its own process group; it is
// stopped (SIGINT, then SIGKILL to its group) at the end of the test.
func start(t *testing.T, dir string, argv ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), kubeEnv()...)
	p.cmd.Stdout = harness.LockedWriter{Mu: &p.mu, B: &p.stdout}
	p.cmd.Stderr = harness.LockedWriter{Mu: &p.mu, B: &p.stderr}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", argv[0], err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

func (p *proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the process with SIGINT (tether: its child exits, the session
// closes), then SIGKILL to its process group after 15 s.
func (p *proc) stop(t *testing.T) {
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
		t.Errorf("%s did not stop on SIGINT within 15s\nstderr:\n%s", p.cmd.Path, p.Stderr())
	}
}

// wait waits until stdout or stderr contains s.
func (p *proc) wait(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stdout(), s) && !strings.Contains(p.Stderr(), s) {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", p.cmd.Path, p.cmd.ProcessState, s, p.Stdout(), p.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Path, s, timeout, p.Stdout(), p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdline shows argv in the results: the binaries and config files built
// for this run by their base names, kubectl as kubectl.
func cmdline(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		a = strings.ReplaceAll(a, binDir+"/", "")
		if a == kubectl {
			a = "kubectl"
		}
		if strings.ContainsAny(a, " '\"?&") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
