package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/deploy"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
)

// TestOperator runs tether through tether-operator as developers who may
// not create pods: RBAC on targets.tether.dev is all they have. It ends by
// uninstalling the operator and comparing every API object with what the
// cluster had before the install.
func TestOperator(t *testing.T) {
	requireE2E(t)
	deployDemo(t)
	isTestNS := func(ns string) bool { return strings.HasPrefix(ns, "e2e-") }
	before := apiSnapshot(t, isTestNS)
	installOperator(t)

	t.Run("seed_demo", func(t *testing.T) { testOperatorDemo(t) })
	t.Run("two_users_and_kill", func(t *testing.T) { testOperatorTwoUsers(t) })
	t.Run("features", func(t *testing.T) { testOperatorFeatures(t) })
	t.Run("operator_restart", func(t *testing.T) { testOperatorRestart(t) })
	t.Run("raw_client", func(t *testing.T) { testOperatorRawClient(t) })
	t.Run("policies", func(t *testing.T) { testPolicies(t) })
	t.Run("queue_split", func(t *testing.T) { testQueueSplit(t) })
	t.Run("queue_split_rabbitmq", func(t *testing.T) { testQueueSplitRabbitMQ(t) })
	t.Run("queue_split_sqs", func(t *testing.T) { testQueueSplitSQS(t) })
	t.Run("queue_split_namespace_deleted", func(t *testing.T) { testQueueSplitNamespaceDeleted(t) })
	t.Run("queue_split_gitops", func(t *testing.T) { testQueueSplitGitOps(t) })

	uninstallOperator(t)
	after := apiSnapshot(t, isTestNS)
	added, removed := diff(after, before)
	if len(added) > 0 || len(removed) > 0 {
		t.Errorf("install then uninstall changed the cluster:\nadded:   %v\nremoved: %v", added, removed)
	}
}

// testOperatorDemo: the seed demo by a developer with only tether-user in
// tether-demo, once with a ServiceAccount token and once with a client
// certificate; without the role, or in another namespace, the RBAC error.
func testOperatorDemo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	saSubject, saKC := serviceAccountUser(t, dir, demoNS, "e2e-dev")
	t.Cleanup(func() { client.CoreV1().ServiceAccounts(demoNS).Delete(ctx, "e2e-dev", metav1.DeleteOptions{}) })
	bindTetherUser(t, demoNS, "e2e-dev", deploy.UserRole, saSubject)
	certKC := certificateUser(t, dir, demoNS, "e2e-cert-dev")
	bindTetherUser(t, demoNS, "e2e-cert-dev", deploy.UserRole, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "e2e-cert-dev"})
	t.Cleanup(func() {
		for _, rb := range []string{"e2e-dev", "e2e-cert-dev"} {
			client.RbacV1().RoleBindings(demoNS).Delete(ctx, rb, metav1.DeleteOptions{})
		}
	})
	_, outsiderKC := serviceAccountUser(t, dir, demoNS, "e2e-outsider")
	t.Cleanup(func() { client.CoreV1().ServiceAccounts(demoNS).Delete(ctx, "e2e-outsider", metav1.DeleteOptions{}) })
	for _, kc := range []string{saKC, certKC} {
		cannot(t, clientFor(t, kc), demoNS)
	}
	url := serviceURL(t, demoNS, "ip-visit-counter")
	waitHTTP(t, url, 30*time.Second)
	cfg := writeConfig(t, dir, `target: deployment/ip-visit-counter
namespace: tether-demo
incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: e2e$"
`)
	for _, who := range []struct{ name, kc string }{{"service_account_token", saKC}, {"client_certificate", certKC}} {
		t.Run(who.name, func(t *testing.T) {
			p := startTetherEnv(t, dir, []string{"KUBECONFIG=" + who.kc}, "exec", "-f", cfg, "--progress", "plain", "--", counterBin, "--greeting=hi through the operator")
			p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
			if !strings.Contains(p.Stderr(), "through tether-operator") {
				t.Errorf("the session did not say it goes through tether-operator:\n%s", p.Stderr())
			}
			cluster := getCounter(t, url, "")
			local := getCounter(t, url, "e2e")
			if cluster.Text != "remote is fun hi" || local.Text != "remote is fun hi through the operator" {
				t.Fatalf("without the header %+v, with it %+v: want the cluster's answer, then the local code's", cluster, local)
			}
			if local.Count != cluster.Count+1 || !strings.Contains(local.IPInfo, "private network") {
				t.Fatalf("the local code's answer %+v: it must use the cluster's Redis (count %d) and ip-info", local, cluster.Count+1)
			}
			p.stop(t)
		})
	}

	t.Run("targetless", func(t *testing.T) {
		// The operator's targetless agent of tether-demo runs in its own
		// namespace with tether-demo's DNS: short names resolve as there.
		svc, err := client.CoreV1().Services(demoNS).Get(ctx, "ip-visit-counter", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("getent hosts ip-visit-counter || echo 'no ip-visit-counter'\ncurl -sS -m 10 -o /dev/null -w '%%{http_code}\\n' http://ip-visit-counter:%d/ || echo 'no curl'", svc.Spec.Ports[0].Port)
		out, errOut, code := runTetherEnv(t, dir, 3*time.Minute, []string{"KUBECONFIG=" + saKC}, "exec", "-n", demoNS, "-t", "targetless", "--progress", "plain", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		want := []string{svc.Spec.ClusterIP + " ip-visit-counter." + demoNS + ".svc.cluster.local", "200"}
		got := lines(out)
		if len(got) != len(want) || strings.Join(strings.Fields(got[0]), " ") != want[0] || got[1] != want[1] {
			t.Fatalf("output:\n%s\nwant:\n%s\nstderr:\n%s", out, strings.Join(want, "\n"), errOut)
		}
		if !strings.Contains(errOut, "targetless agent of "+demoNS+" (through tether-operator)") {
			t.Errorf("the session did not say it goes through the operator's targetless agent:\n%s", errOut)
		}
	})
	t.Run("no_role", func(t *testing.T) {
		_, errOut, code := runTetherEnv(t, dir, 2*time.Minute, []string{"KUBECONFIG=" + outsiderKC}, "exec", "-f", cfg, "--progress", "plain", "--", "true")
		for _, want := range []string{"targets.tether.dev", demoNS, "tether-user"} {
			if code == 0 || !strings.Contains(errOut, want) {
				t.Errorf("a user without tether-user: exit %d, stderr lacks %q:\n%s", code, want, errOut)
			}
		}
	})
	t.Run("no_steal_verb", func(t *testing.T) {
		// use and mirror, not steal: the agent refuses the steal with the
		// verb to ask for, and the refusal is an Event on the target.
		sub, kc := serviceAccountUser(t, dir, demoNS, "e2e-viewer")
		t.Cleanup(func() { client.CoreV1().ServiceAccounts(demoNS).Delete(ctx, "e2e-viewer", metav1.DeleteOptions{}) })
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "e2e-viewer", Namespace: demoNS}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"targets"}, Verbs: []string{"get", v1alpha1.VerbUse, v1alpha1.VerbMirror}},
			{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"targets/connect"}, Verbs: []string{"create"}},
			{APIGroups: []string{"", "apps"}, Resources: []string{"pods", "deployments", "replicasets"}, Verbs: []string{"get", "list", "watch"}},
		}}
		if _, err := client.RbacV1().Roles(demoNS).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.RbacV1().Roles(demoNS).Delete(ctx, "e2e-viewer", metav1.DeleteOptions{}) })
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-viewer", Namespace: demoNS},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "e2e-viewer"}, Subjects: []rbacv1.Subject{sub}}
		if _, err := client.RbacV1().RoleBindings(demoNS).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.RbacV1().RoleBindings(demoNS).Delete(ctx, "e2e-viewer", metav1.DeleteOptions{}) })
		p := startTetherEnv(t, dir, []string{"KUBECONFIG=" + kc}, "exec", "-f", cfg, "--progress", "plain", "--", counterBin)
		p.waitStderr(t, `the RBAC verb "steal"`, 2*time.Minute)
		if local := getCounter(t, url, "e2e"); local.Text != "remote is fun hi" {
			t.Errorf("a refused steal still took the request: %+v", local)
		}
		p.stop(t)
	})
	t.Run("other_namespace", func(t *testing.T) {
		ns := newNamespace(t, "e2e-operator-other", nil)
		apply(t, []byte(replicasYAML(ns, "web", 1)))
		waitDeployments(t, ns, 2*time.Minute)
		_, errOut, code := runTetherEnv(t, dir, 2*time.Minute, []string{"KUBECONFIG=" + saKC}, "exec", "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", "true")
		if code == 0 || !strings.Contains(errOut, ns) || !strings.Contains(errOut, "targets.tether.dev") {
			t.Errorf("the developer in a namespace without the role: exit %d:\n%s", code, errOut)
		}
	})
	var ev map[string]int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if ev = eventReasons(t, demoNS, "Deployment", "ip-visit-counter"); ev["TetherSessionStarted"] >= 2 && ev["TetherSessionEnded"] >= 2 && ev["TetherRefused"] > 0 {
			break
		}
	}
	if ev["TetherSessionStarted"] < 2 || ev["TetherSessionEnded"] < 2 || ev["TetherRefused"] == 0 {
		t.Errorf("Events on deployment/ip-visit-counter: %v, want 2 TetherSessionStarted and TetherSessionEnded (the two developers) and a TetherRefused (the steal without its verb)", ev)
	}
}

// testOperatorTwoUsers: two developers with different filters on a
// 3-replica target; tether sessions -A shows both by name; an admin ends
// one (its tether says who did), the other keeps all 3 pods' requests.
func testOperatorTwoUsers(t *testing.T) {
	ns := newNamespace(t, "e2e-operator-users", nil)
	apply(t, []byte(replicasYAML(ns, "web", 3)))
	waitDeployments(t, ns, 2*time.Minute)
	pods := waitPodsReady(t, ns, "app=web", 3, 2*time.Minute)
	dir := t.TempDir()
	procs := map[string]*tetherProc{}
	for _, u := range []string{"dev1", "dev2"} {
		sub, kc := serviceAccountUser(t, dir, ns, u)
		bindTetherUser(t, ns, u, deploy.UserRole, sub)
		cfg := writeConfig(t, t.TempDir(), fmt.Sprintf("incoming:\n  mode: steal\n  http_filter:\n    header_filter: \"^x-tether-user: %s$\"\n", u))
		procs[u] = startTetherEnv(t, dir, []string{"KUBECONFIG=" + kc, localServerEnv + "=8080", localNameEnv + "=" + u},
			"exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
	}
	for u, p := range procs {
		p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		if !strings.Contains(p.Stderr(), "incoming: 3 pods") {
			t.Errorf("%s's session does not cover the 3 pods:\n%s", u, p.Stderr())
		}
	}
	everywhere := func(user, want string) {
		t.Helper()
		for i := range pods {
			if a := ask(podURL(&pods[i], "/10.1.2.3"), user); a.err != nil || !strings.Contains(a.body, want) {
				t.Errorf("pod %s, x-tether-user: %s: %q %v, want %q", pods[i].Name, user, a.body, a.err, want)
			}
		}
	}
	everywhere("dev1", "local dev1")
	everywhere("dev2", "local dev2")
	if t.Failed() {
		t.Fatalf("dev1's tether:\n%s\ndev2's tether:\n%s\n%s", procs["dev1"].Stderr(), procs["dev2"].Stderr(), operatorLogs())
	}
	user := func(u string) string { return "system:serviceaccount:" + ns + ":" + u }
	list := sessionsJSON(t)
	s1, s2 := sessionOf(list, user("dev1")), sessionOf(list, user("dev2"))
	if s1 == nil || s2 == nil {
		t.Fatalf("tether sessions -A lacks a user: %+v", list)
	}
	for _, s := range []*v1alpha1.Session{s1, s2} {
		if s.Namespace != ns || len(s.Status.Pods) != 3 || !strings.Contains(s.Spec.Target, "deployment/web") || !strings.Contains(s.Incoming(), "steal 8080") || !strings.HasPrefix(s.Spec.Client, "tether/") {
			t.Errorf("session of %s: %+v, want 3 pods of deployment/web in %s stealing 8080", s.Spec.User, s, ns)
		}
	}
	text, errOut, code := runTether(t, dir, 30*time.Second, "sessions", "-A")
	if code != 0 || !strings.Contains(text, user("dev1")) || !strings.Contains(text, s2.Name) {
		t.Errorf("tether sessions -A: exit %d\n%s%s", code, text, errOut)
	}
	// A developer may not end another's session.
	_, errOut, code = runTetherEnv(t, dir, 30*time.Second, []string{"KUBECONFIG=" + dir + "/dev2.kubeconfig"}, "sessions", "kill", s1.Name, "-n", ns)
	if code == 0 || !strings.Contains(errOut, "tether-admin") {
		t.Errorf("dev2 ending dev1's session: exit %d, want a refusal naming tether-admin:\n%s", code, errOut)
	}
	out, errOut, code := runTether(t, dir, 30*time.Second, "sessions", "kill", s1.Name, "-n", ns)
	if code != 0 {
		t.Fatalf("tether sessions kill: exit %d\n%s%s", code, out, errOut)
	}
	waitExit(t, procs["dev1"], 30*time.Second)
	if c := procs["dev1"].cmd.ProcessState.ExitCode(); c != 70 || !strings.Contains(procs["dev1"].Stderr(), "ended by tether-admin") {
		t.Errorf("dev1's tether after the kill: exit %d, want 70 and who ended it:\n%s", c, procs["dev1"].Stderr())
	}
	everywhere("dev2", "local dev2")
	everywhere("dev1", "private network (cluster)")
	// The ends are recorded by the leader, which polls the agents.
	var ev map[string]int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if ev = eventReasons(t, ns, "Deployment", "web"); ev["TetherSessionEnded"] >= 3 {
			break
		}
	}
	if ev["TetherSessionStarted"] < 6 || ev["TetherSessionKilled"] != 1 || ev["TetherSessionEnded"] < 3 {
		t.Errorf("Events on deployment/web: %v, want 6 started (2 users x 3 pods), 1 killed, 3 ended\n%s", ev, operatorLogs())
	}
	procs["dev2"].stop(t)
}

// testOperatorRestart: deleting the operator's pods mid-session is a
// tunnel drop: the session resumes, and the requests it does not steal
// never fail meanwhile.
func testOperatorRestart(t *testing.T) {
	ns := newNamespace(t, "e2e-operator-restart", nil)
	apply(t, []byte(replicasYAML(ns, "web", 3)))
	waitDeployments(t, ns, 2*time.Minute)
	waitPodsReady(t, ns, "app=web", 3, 2*time.Minute)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "incoming:\n  mode: steal\n  http_filter:\n    header_filter: \"^x-tether-user: me$\"\n")
	p := startTetherEnv(t, dir, []string{localServerEnv + "=8080"}, "exec", "-f", cfg, "-n", ns, "-t", "deployment/web", "--progress", "plain", "--", os.Args[0])
	p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
	url := serviceURL(t, ns, "web") + "/10.1.2.3"
	waitAnswer(t, url, "me", "local", 30*time.Second, p)
	l := startLoad(t, url, "private network (cluster)")
	time.Sleep(2 * time.Second)
	l.setPhase("during")
	ctx := context.Background()
	if err := client.CoreV1().Pods(deploy.DefaultNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + deploy.Name}); err != nil {
		t.Fatal(err)
	}
	p.waitStderr(t, "resumed", 2*time.Minute)
	waitAnswer(t, url, "me", "local", 30*time.Second, p)
	l.setPhase("after")
	time.Sleep(2 * time.Second)
	l.end()
	r := l.result()
	t.Logf("unmatched requests: %s", r)
	if r.sent() < 50 || r.failed() > 0 {
		t.Errorf("unmatched requests across the operator's restart: %s; want none failed (and at least 50 sent)", r)
	}
	p.stop(t)
	// Nothing is left of the session: the agents linger out.
	deadline := time.Now().Add(90 * time.Second)
	for {
		pods, err := client.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelApp + "=" + kube.AppAgent})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents left in %s 90s after the session ended: %d", deploy.DefaultNamespace, len(pods.Items))
		}
		time.Sleep(time.Second)
	}
}

// testOperatorRawClient: a client of its own, speaking the wire protocol
// with a developer's valid token for one namespace, cannot reach another
// namespace's pods through the operator, whatever its hello says, nor the
// agents without the operator.
func testOperatorRawClient(t *testing.T) {
	nsA := newNamespace(t, "e2e-operator-raw-a", nil)
	nsB := newNamespace(t, "e2e-operator-raw-b", nil)
	for _, ns := range []string{nsA, nsB} {
		apply(t, []byte(replicasYAML(ns, "web", 1)))
	}
	for _, ns := range []string{nsA, nsB} {
		waitDeployments(t, ns, 2*time.Minute)
	}
	podA, podB := waitPodsReady(t, nsA, "app=web", 1, time.Minute)[0], waitPodsReady(t, nsB, "app=web", 1, time.Minute)[0]
	dir := t.TempDir()
	sub, kc := serviceAccountUser(t, dir, nsA, "raw")
	bindTetherUser(t, nsA, "raw", deploy.UserRole, sub)
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ce *kube.ConnectError
	_, err = kube.DialOperator(ctx, cfg, nsB, "deployment.web", v1alpha1.TargetConnectOptions{Pod: podB.Name})
	if !errors.As(err, &ce) || ce.Code != 403 {
		t.Errorf("connecting to namespace %s with a token for %s: %v, want 403", nsB, nsA, err)
	}
	// A pod of B named as a pod of A's target.
	_, err = kube.DialOperator(ctx, cfg, nsA, "deployment.web", v1alpha1.TargetConnectOptions{Pod: podB.Name})
	if !errors.As(err, &ce) || ce.Code/100 != 4 {
		t.Errorf("naming namespace %s's pod in %s: %v, want a 4xx refusal", nsB, nsA, err)
	}
	// A's own pod, with a hello that names B's container, a token, a
	// grant of its own and the admin channel: none of it survives.
	conn, err := kube.DialOperator(ctx, cfg, nsA, "deployment.web", v1alpha1.TargetConnectOptions{Pod: podA.Name})
	if err != nil {
		t.Fatalf("connecting to %s's own pod: %v", nsA, err)
	}
	defer conn.Close()
	w, err := protocol.ClientHandshake(conn, protocol.Hello{Client: "raw", Target: podB.Status.ContainerStatuses[0].ContainerID, Token: "forged",
		Grant: &protocol.Grant{User: "system:admin", Namespace: nsB}, Admin: true})
	if err != nil {
		t.Fatalf("handshake through the operator: %v", err)
	}
	if w.SessionID == "" || w.Target.Hostname != podA.Name {
		t.Errorf("welcome %+v: want a session in pod %s (not %s, not the admin channel)", w, podA.Name, podB.Name)
	}
	mux, err := protocol.NewClientMux(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	st, err := mux.Open()
	if err != nil {
		t.Fatal(err)
	}
	protocol.WriteFrame(st, protocol.Request{Op: protocol.OpHostname})
	var resp protocol.Response
	if err := protocol.ReadFrame(st, &resp); err != nil || resp.Hostname != podA.Name {
		t.Errorf("hostname through the raw session: %q %v, want %s", resp.Hostname, err, podA.Name)
	}
	st.Close()
	if s := sessionOf(sessionsJSON(t), "system:serviceaccount:"+nsA+":raw"); s == nil || s.Namespace != nsA {
		t.Errorf("the raw session is not listed as the token's user in %s: %+v", nsA, s)
	}
	// The agents answer nobody without the operator's token.
	agents, err := client.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelApp + "=" + kube.AppAgent})
	if err != nil || len(agents.Items) == 0 {
		t.Fatalf("no agent pod: %v", err)
	}
	hello := protocol.Hello{Client: "raw", Target: podB.Status.ContainerStatuses[0].ContainerID}
	for _, a := range agents.Items {
		addr := net.JoinHostPort(a.Status.PodIP, fmt.Sprint(kube.DefaultAgentPort))
		dial := func() net.Conn {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dialling agent %s: %v", a.Name, err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			return c
		}
		// In clear from the pod network: closed unanswered (only TLS
		// keyed by the token is taken there).
		c := dial()
		protocol.WriteFrame(c, hello)
		b, err := io.ReadAll(c)
		c.Close()
		if len(b) != 0 || err != nil && !isReset(err) {
			t.Errorf("agent %s, a plain hello: read %q, %v; want the connection closed unanswered", a.Name, b, err)
		}
		// In TLS without knowing the token (so without checking the
		// agent's key): the hello is refused for its missing token.
		tc := tls.Client(dial(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
		_, err = protocol.ClientHandshake(tc, hello)
		tc.Close()
		if err == nil || !strings.Contains(err.Error(), "token") {
			t.Errorf("agent %s in TLS without its token: %v, want a refusal", a.Name, err)
		}
	}
}
