package kube

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tether-dev/tether/test/bench/report"
)

// TestStartupReplicas: start-up on a 3-replica Deployment, whose every pod
// is served by its node's agent and gets the session's connection
// (docs/replicas.md: one agent per node, here one for all three), against
// the 1-replica deployment/benchsrv in the same run, warm and cold, runs
// interleaved; with the CPU time of tether exec, so that a shorter wall
// time cannot come from work moved elsewhere unseen.
func TestStartupReplicas(t *testing.T) {
	benchEnabled(t)
	benchCluster(t)
	createReplicas(t, "benchrep", 3)
	const coldRuns, warmRuns = 5, 15
	cold := writeConfig(t, "replicas-cold", "30s", "")
	coldPerPod := writeConfig(t, "replicas-cold-per-pod", "30s", "  per_node: false\n")
	warm := writeConfig(t, "replicas-warm", "2s", "")
	one := func(cfg string) []string { return tetherExec(cfg, "off", "true") }
	three := func(cfg string) []string {
		return append([]string{tetherBin, "exec", "-f", cfg, "-n", ns, "-t", "deployment/benchrep", "--progress", "off", "--"}, "true")
	}
	type series struct{ wall, cpu []float64 }
	var cold1, cold3, cold3PerPod, warm1, warm3 series
	// What the node itself takes to start 3 pods at once rather than 1,
	// without tether: the floor under the cold ratio on a single node.
	var pods1, pods3 []float64
	for range coldRuns {
		pods1 = append(pods1, ms(startPods(t, 1)))
		pods3 = append(pods3, ms(startPods(t, 3)))
	}
	measure := func(s *series, argv []string) {
		wall, cpu := runCPU(t, 3*time.Minute, argv)
		s.wall = append(s.wall, ms(wall))
		s.cpu = append(s.cpu, ms(cpu))
	}
	for range coldRuns {
		deleteAgents(t)
		measure(&cold1, one(cold))
		deleteAgents(t)
		measure(&cold3, three(cold))
		deleteAgents(t)
		measure(&cold3PerPod, three(coldPerPod))
	}
	deleteAgents(t)
	h1 := holdAgent(t, warm)
	h3 := start(t, binDir, tetherBin, "exec", "-f", warm, "-n", ns, "-t", "deployment/benchrep", "--progress", "plain", "--", "sleep", "3600")
	h3.wait(t, "incoming: 3 pods", 3*time.Minute)
	for range warmRuns {
		measure(&warm1, one(warm))
		measure(&warm3, three(warm))
	}
	h1.stop(t)
	h3.stop(t)

	row := func(name, cfg string, base, rep []float64, unit string, target *report.Target, summary bool) report.Row {
		return report.Row{
			Name: name, Stat: "median", Unit: unit,
			Baseline: report.Runs("1 replica (deployment/benchsrv)", cmdline(one(cfg)), base),
			Tether:   report.Runs("3 replicas (deployment/benchrep)", cmdline(three(cfg)), rep),
			Target:   target, Summary: summary,
		}
	}
	limit := &report.Target{Of: "ratio", Op: "<=", Limit: 1.5}
	writeResults(t, report.File{
		Name:  "startup-replicas",
		Title: "start-up on a 3-replica Deployment (an agent per node, a connection per pod) vs a 1-replica one",
		Notes: []string{
			"wall time of tether exec -- true, ms, and its CPU time (user+system, its own and its children's), ms;",
			"warm: other sessions keep every agent running; cold: before each run every agent Job is deleted and gone, the run creates one per node (agent.per_node, the default; here one node);",
			"the 1- and 3-replica runs alternate, so both see the same cluster",
		},
		Rows: []report.Row{
			row("warm start, 3 replicas vs 1", warm, warm1.wall, warm3.wall, "ms", limit, true),
			row("cold start, 3 replicas vs 1", cold, cold1.wall, cold3.wall, "ms", limit, true),
			{
				Name: "cold start, 3 replicas with an agent per pod vs 1 (agent.per_node: false)", Stat: "median", Unit: "ms",
				Baseline: report.Runs("1 replica (deployment/benchsrv)", cmdline(one(cold)), cold1.wall),
				Tether:   report.Runs("3 replicas, 3 agent pods", cmdline(three(coldPerPod)), cold3PerPod.wall),
			},
			{
				Name: "the node alone: 3 pods started at once vs 1 (no tether)", Stat: "median", Unit: "ms",
				Baseline: report.Runs("1 pod created, until its container runs", "client-go: create pod, poll until running", pods1),
				Tether:   report.Runs("3 pods created at once, until all run", "client-go: create 3 pods, poll until all run", pods3),
				Note:     "what 3 agent pods (agent.per_node: false) would cost on this single 2-core node",
			},
			row("tether exec CPU, warm", warm, warm1.cpu, warm3.cpu, "ms", nil, false),
			row("tether exec CPU, cold", cold, cold1.cpu, cold3.cpu, "ms", nil, false),
		},
	})
}

// startPods creates n pods of the bench image at once and returns how long
// until all their containers run; it deletes them again.
func startPods(t *testing.T, n int) time.Duration {
	t.Helper()
	pods := client.CoreV1().Pods(ns)
	names := make([]string, n)
	start := time.Now()
	errs := make(chan error, n)
	for i := range n {
		names[i] = fmt.Sprintf("podstart-%d", i)
		go func() {
			_, err := pods.Create(context.Background(), &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: names[i], Labels: map[string]string{"app": "podstart"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers:                    []corev1.Container{{Name: "app", Image: benchImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"-listen", ":8080", "-who", "x"}}},
				},
			}, metav1.CreateOptions{})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("creating a pod: %v", err)
		}
	}
	var took time.Duration
	err := func() error {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			running := 0
			list, err := pods.List(context.Background(), metav1.ListOptions{LabelSelector: "app=podstart"})
			if err != nil {
				return err
			}
			for _, p := range list.Items {
				if len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil {
					running++
				}
			}
			if running == n {
				took = time.Since(start)
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d pods running after 2 minutes", running, n)
			}
		}
	}()
	for _, name := range names {
		pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	if werr := waitFor(2*time.Minute, func() error {
		list, err := pods.List(context.Background(), metav1.ListOptions{LabelSelector: "app=podstart"})
		if err == nil && len(list.Items) > 0 {
			err = fmt.Errorf("%d pods left", len(list.Items))
		}
		return err
	}); err == nil {
		err = werr
	}
	if err != nil {
		t.Fatal(err)
	}
	return took
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runCPU runs argv and returns its wall time and CPU time.
func runCPU(t *testing.T, timeout time.Duration, argv []string) (wall, cpu time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), kubeEnv()...)
	startT := time.Now()
	out, err := cmd.CombinedOutput()
	wall = time.Since(startT)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmdline(argv), err, out)
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// createReplicas makes deployment NAME of n benchserver pods and waits
// until all are ready.
func createReplicas(t *testing.T, name string, n int32) {
	t.Helper()
	dep := benchDeployment(name, n)
	deps := client.AppsV1().Deployments(ns)
	if _, err := deps.Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment %s: %v", name, err)
	}
	t.Cleanup(func() { deps.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if err := waitFor(2*time.Minute, func() error {
		d, err := deps.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != n {
			return fmt.Errorf("deployment %s: %d of %d pods ready", name, d.Status.ReadyReplicas, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
