package cli

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/kube"
)

// readyPod is a running, ready pod of namespace demo with one container
// "app", owned by the controller of owner (apiVersion, kind, name) if any.
func readyPod(name string, created time.Time, owner ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}, CreationTimestamp: metav1.NewTime(created)}}
	if len(owner) == 3 {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: owner[0], Kind: owner[1], Name: owner[2], Controller: &yes}}
		p.Labels["app"] = owner[2]
	}
	p.Spec.Containers = []corev1.Container{{Name: "app"}}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://" + name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	return p
}

// followFixture: deployment/web (its ReplicaSet web-7d9f, pods web-7d9f-old
// and, newer, web-7d9f-new) and the bare pod "bare".
func followFixture() *fake.Clientset {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	yes := true
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web-7d9f"}}
	return fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"}, Spec: appsv1.DeploymentSpec{Selector: sel}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", Namespace: "demo",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: &yes}}}},
		readyPod("web-7d9f-old", t0, "apps/v1", "ReplicaSet", "web-7d9f"),
		readyPod("web-7d9f-new", t0.Add(time.Minute), "apps/v1", "ReplicaSet", "web-7d9f"),
		readyPod("bare", t0),
	)
}

// testAttachment is an attachment to target (resolved to its pod now), with
// --follow-owner when follow.
func testAttachment(t *testing.T, cs *fake.Clientset, target string, follow bool) *attachment {
	t.Helper()
	spec, err := kube.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	a := &attachment{k: &kubeClients{client: cs, namespace: "demo"}, spec: spec, gone: make(chan struct{})}
	if a.resolved, err = a.resolver().Resolve(context.Background(), "demo", spec); err != nil {
		t.Fatal(err)
	}
	if follow {
		owner, err := a.resolver().OwnerTarget(context.Background(), a.resolved.Pod, spec.Container)
		if err != nil {
			t.Fatal(err)
		}
		a.owner = &owner
	}
	return a
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func deletePod(t *testing.T, cs *fake.Clientset, name string) {
	t.Helper()
	if err := cs.CoreV1().Pods("demo").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// markDeleted sets the pod's deletionTimestamp, as the API server does at
// `kubectl delete` while the pod terminates.
func markDeleted(t *testing.T, cs *fake.Clientset, name string) {
	t.Helper()
	p, err := cs.CoreV1().Pods("demo").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := cs.CoreV1().Pods("demo").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestResolveAgain: after an agent loss, a pod target stays on its pod
// while it lives; once it is gone the session follows the owner's new pod
// (--follow-owner) or ends with a message saying what to do; a workload
// target resolves as at the start.
func TestResolveAgain(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		follow  bool
		fault   func(t *testing.T, cs *fake.Clientset)
		wantPod string // "" when the session ends
		wantMsg []string
	}{
		{name: "pod alive (agent lost)", target: "pod/web-7d9f-old", wantPod: "web-7d9f-old"},
		{name: "pod alive, following", target: "pod/web-7d9f-new", follow: true, wantPod: "web-7d9f-new"}, // not the owner's oldest pod
		{name: "bare pod deleted", target: "pod/bare", fault: func(t *testing.T, cs *fake.Clientset) { deletePod(t, cs, "bare") },
			wantMsg: []string{"the target pod demo/bare was deleted and it has no owner that replaces it", "the session ends (exit code 69)", "tether ls -n demo"}},
		{name: "deployment's pod deleted", target: "pod/web-7d9f-old", fault: func(t *testing.T, cs *fake.Clientset) { deletePod(t, cs, "web-7d9f-old") },
			wantMsg: []string{"the target pod demo/web-7d9f-old was deleted", "(exit code 69)", "target its owner (-t deployment/web) or pass --follow-owner"}},
		{name: "deployment's pod terminating", target: "pod/web-7d9f-old/container/app", fault: func(t *testing.T, cs *fake.Clientset) { markDeleted(t, cs, "web-7d9f-old") },
			wantMsg: []string{"the target pod demo/web-7d9f-old was deleted", "target its owner (-t deployment/web/container/app)"}},
		{name: "deployment's pod deleted, following", target: "pod/web-7d9f-old", follow: true,
			fault: func(t *testing.T, cs *fake.Clientset) { deletePod(t, cs, "web-7d9f-old") }, wantPod: "web-7d9f-new"},
		{name: "deployment's pod terminating, following", target: "pod/web-7d9f-old", follow: true,
			fault: func(t *testing.T, cs *fake.Clientset) { markDeleted(t, cs, "web-7d9f-old") }, wantPod: "web-7d9f-new"},
		{name: "workload target", target: "deployment/web",
			fault: func(t *testing.T, cs *fake.Clientset) { deletePod(t, cs, "web-7d9f-old") }, wantPod: "web-7d9f-new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := followFixture()
			a := testAttachment(t, cs, tt.target, tt.follow)
			if tt.fault != nil {
				tt.fault(t, cs)
			}
			got, err := a.resolveAgain(context.Background(), a.resolved)
			if tt.wantPod != "" {
				if err != nil || got.Pod.Name != tt.wantPod {
					t.Fatalf("resolveAgain = %v, %v; want pod %s", got, err, tt.wantPod)
				}
				if isClosed(a.targetGone()) {
					t.Fatalf("the session ends: %v", a.goneError())
				}
				return
			}
			if err == nil {
				t.Fatalf("resolveAgain = pod %s, want the session to end", got.Pod.Name)
			}
			if !isClosed(a.targetGone()) {
				t.Fatal("targetGone is not closed")
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			// Later reconnects end at once, with the same message.
			if _, again := a.resolveAgain(context.Background(), a.resolved); again == nil || again.Error() != err.Error() {
				t.Errorf("second resolveAgain: %v", again)
			}
		})
	}
}

// TestResolveAgainAPIDown: when the API server does not answer, a pod
// target is not taken for gone: the reconnect retries.
func TestResolveAgainAPIDown(t *testing.T) {
	cs := followFixture()
	a := testAttachment(t, cs, "pod/bare", false)
	cs.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if _, err := a.resolveAgain(context.Background(), a.resolved); err == nil || isClosed(a.targetGone()) {
		t.Fatalf("resolveAgain = %v, gone %v; want an error to retry on, not the end", err, isClosed(a.targetGone()))
	}
}

// TestPodGoneMessage: each way a target pod goes says what happened, that
// the session ends with exit code 69, and what to do.
func TestPodGoneMessage(t *testing.T) {
	deploy := kube.TargetSpec{Kind: kube.KindDeployment, Name: "web", Container: "app"}
	tests := []struct {
		name     string
		why      string
		owner    kube.TargetSpec
		ownerErr error
		want     []string
	}{
		{"owned", "was deleted", deploy, nil, []string{"the target pod demo/web-1 was deleted: the session ends (exit code 69) without following its replacement: target its owner (-t deployment/web/container/app) or pass --follow-owner"}},
		{"ended", "has ended (phase Failed: Evicted)", deploy, nil, []string{"the target pod demo/web-1 has ended (phase Failed: Evicted): ", "--follow-owner"}},
		{"no owner", "was deleted", kube.TargetSpec{}, &kube.NoOwnerError{Namespace: "demo", Pod: "web-1"},
			[]string{"the target pod demo/web-1 was deleted and it has no owner that replaces it: the session ends (exit code 69); run tether again with another target (tether ls -n demo lists them)"}},
		{"unknown controller", "was deleted", kube.TargetSpec{}, &kube.NoOwnerError{Namespace: "demo", Pod: "web-1", Controller: "VirtualMachineInstance vm"},
			[]string{"(exit code 69); run tether again with another target", "VirtualMachineInstance vm, which tether cannot follow"}},
		{"owner unreadable", "was deleted", kube.TargetSpec{}, errors.New("its ReplicaSet web-7d9f is gone"), []string{"(exit code 69); run tether again", "its ReplicaSet web-7d9f is gone"}},
	}
	for _, tt := range tests {
		got := podGoneMessage("demo", "web-1", tt.why, tt.owner, tt.ownerErr)
		for _, s := range tt.want {
			if !strings.Contains(got, s) {
				t.Errorf("%s: %q lacks %q", tt.name, got, s)
			}
		}
	}
}

// waitWatching waits until the attachment's watcher watches the pods.
func waitWatching(t *testing.T, cs *fake.Clientset) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		for _, a := range cs.Actions() {
			if a.GetVerb() == "watch" && a.GetResource().Resource == "pods" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher does not watch the pods")
		}
	}
}

// TestWatchTarget: the watcher ends the session when its pod is deleted,
// is being deleted or ends, not for another pod's events or its own
// updates; with the watch refused (RBAC) it reads the pod again within
// PodWatchRetryMax.
func TestWatchTarget(t *testing.T) {
	update := func(t *testing.T, cs *fake.Clientset, name string, edit func(*corev1.Pod)) {
		p, err := cs.CoreV1().Pods("demo").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		edit(p)
		if _, err := cs.CoreV1().Pods("demo").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name        string
		forbidWatch bool
		fault       func(t *testing.T, cs *fake.Clientset)
		within      time.Duration
		wantWhy     string
	}{
		{"deleted", false, func(t *testing.T, cs *fake.Clientset) { deletePod(t, cs, "bare") }, time.Second, "was deleted"},
		{"being deleted", false, func(t *testing.T, cs *fake.Clientset) { markDeleted(t, cs, "bare") }, time.Second, "was deleted"},
		{"ended", false, func(t *testing.T, cs *fake.Clientset) {
			update(t, cs, "bare", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
		}, time.Second, "has ended (phase Succeeded)"},
		{"watch forbidden", true, func(t *testing.T, cs *fake.Clientset) { deletePod(t, cs, "bare") }, PodWatchRetryMax + time.Second, "was deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := followFixture()
			if tt.forbidWatch {
				cs.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", nil)
				})
			}
			a := testAttachment(t, cs, "pod/bare", false)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { a.watchTarget(ctx, a.resolved.Pod); close(done) }()
			defer func() { cancel(); <-done }()
			waitWatching(t, cs)
			// Noise: another pod goes, the target's labels change.
			deletePod(t, cs, "web-7d9f-old")
			update(t, cs, "bare", func(p *corev1.Pod) { p.Labels["touched"] = "yes" })
			time.Sleep(50 * time.Millisecond)
			if isClosed(a.targetGone()) {
				t.Fatalf("the session ends without its pod gone: %v", a.goneError())
			}
			start := time.Now()
			tt.fault(t, cs)
			select {
			case <-a.targetGone():
			case <-time.After(tt.within):
				t.Fatalf("the session does not end within %v of the fault", tt.within)
			}
			t.Logf("ended %v after the fault: %v", time.Since(start).Round(time.Millisecond), a.goneError())
			if msg := a.goneError().Error(); !strings.Contains(msg, "the target pod demo/bare "+tt.wantWhy) || !strings.Contains(msg, "exit code 69") {
				t.Errorf("message %q", msg)
			}
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Error("the watcher goes on after the end")
			}
		})
	}
}

// TestExecFlagsOverride: -t and --follow-owner override the config's
// target and follow_owner when given, either way; not given, the config's
// values stay.
func TestExecFlagsOverride(t *testing.T) {
	tests := []struct {
		name       string
		cfg        config.Config
		flags      execFlags
		wantTarget string
		wantFollow bool
	}{
		{"config only", config.Config{Target: config.Target{Path: "pod/a"}, FollowOwner: true}, execFlags{}, "pod/a", true},
		{"flag on", config.Config{Target: config.Target{Path: "pod/a"}}, execFlags{followOwner: true, followOwnerSet: true}, "pod/a", true},
		{"flag off over config", config.Config{Target: config.Target{Path: "pod/a"}, FollowOwner: true}, execFlags{followOwner: false, followOwnerSet: true}, "pod/a", false},
		{"target flag", config.Config{Target: config.Target{Path: "pod/a"}}, execFlags{target: "pod/b"}, "pod/b", false},
	}
	for _, tt := range tests {
		cfg := tt.cfg
		tt.flags.override(&cfg)
		if cfg.Target.Path != tt.wantTarget || cfg.FollowOwner != tt.wantFollow {
			t.Errorf("%s: target %q follow_owner %v; want %q %v", tt.name, cfg.Target, cfg.FollowOwner, tt.wantTarget, tt.wantFollow)
		}
	}
}

// TestParseStat reads /proc/PID/stat lines, names with spaces and
// parentheses included.
func TestParseStat(t *testing.T) {
	tests := []struct {
		in         string
		ppid, pgrp int
		ok         bool
	}{
		{"1234 (sleep) S 1000 1234 1000 0 -1 4194560", 1000, 1234, true},
		{"1234 (my (odd) prog) R 7 8 9", 7, 8, true},
		{"1234 (x)", 0, 0, false},
		{"garbage", 0, 0, false},
	}
	for _, tt := range tests {
		ppid, pgrp, ok := parseStat([]byte(tt.in))
		if ppid != tt.ppid || pgrp != tt.pgrp || ok != tt.ok {
			t.Errorf("parseStat(%q) = %d, %d, %v; want %d, %d, %v", tt.in, ppid, pgrp, ok, tt.ppid, tt.pgrp, tt.ok)
		}
	}
}

// child starts argv as a child of this process, in a process group of its
// own when ownGroup (as layer.Run starts the command), and returns it with
// a channel closed once it has been waited for.
func child(t *testing.T, ownGroup bool, argv ...string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: ownGroup}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	return cmd, waited
}

func signalOf(cmd *exec.Cmd) syscall.Signal {
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// TestStopCommand: the command's process group gets SIGTERM, and SIGKILL
// after the grace when it ignores SIGTERM; a child in tether's own group
// (a credential plugin) is left alone.
func TestStopCommand(t *testing.T) {
	plugin, pluginDone := child(t, false, "sleep", "60")
	t.Run("SIGTERM", func(t *testing.T) {
		cmd, waited := child(t, true, "sleep", "60")
		if got := childGroups(); len(got) != 1 || got[0] != cmd.Process.Pid {
			t.Fatalf("childGroups = %v, want [%d] (not the plugin %d)", got, cmd.Process.Pid, plugin.Process.Pid)
		}
		start := time.Now()
		stopCommand(waited, time.Minute)
		if sig := signalOf(cmd); sig != syscall.SIGTERM {
			t.Fatalf("the command ended with %v (%v), want SIGTERM", cmd.ProcessState, sig)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stopCommand took %v for a command that exits at SIGTERM", d)
		}
	})
	t.Run("SIGKILL after the grace", func(t *testing.T) {
		cmd, waited := child(t, true, "sh", "-c", `trap "" TERM; while :; do sleep 0.05; done`)
		time.Sleep(200 * time.Millisecond) // the trap is set
		const grace = 300 * time.Millisecond
		start := time.Now()
		stopCommand(waited, grace)
		took := time.Since(start)
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			t.Fatal("the command ignoring SIGTERM still runs 5s after stopCommand")
		}
		if sig := signalOf(cmd); sig != syscall.SIGKILL {
			t.Fatalf("the command ended with %v, want SIGKILL", cmd.ProcessState)
		}
		if took < grace {
			t.Errorf("SIGKILL after %v, before the grace of %v", took, grace)
		}
	})
	t.Run("command not started yet", func(t *testing.T) {
		ran := make(chan struct{})
		stopped := make(chan struct{})
		go func() { stopCommand(ran, time.Minute); close(stopped) }()
		time.Sleep(100 * time.Millisecond) // stopCommand looks for the command
		cmd, waited := child(t, true, "sleep", "60")
		go func() { <-waited; close(ran) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("stopCommand did not stop a command started after it")
		}
		if sig := signalOf(cmd); sig != syscall.SIGTERM {
			t.Fatalf("the command ended with %v, want SIGTERM", cmd.ProcessState)
		}
	})
	select {
	case <-pluginDone:
		t.Fatalf("the child in tether's own group was signalled: %v", plugin.ProcessState)
	default:
	}
}
