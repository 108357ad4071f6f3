package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	policiesv1 "github.com/tether-dev/tether/api/policies/v1alpha1"
	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/deploy"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
)

// policiesYAML is the policy scenario's workload: pweb (ip-info) with
// passwords in its environment and a writable /app/config (an emptyDir
// an init container fills: the kernel would let a write through, so an
// EROFS is the policy's), and the "sensitive database", a Redis.
func policiesYAML(ns string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: pweb, namespace: %[1]s, labels: {e2e-policy: "on"}}
spec:
  replicas: 1
  selector: {matchLabels: {app: pweb}}
  template:
    metadata: {labels: {app: pweb}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: config
        image: tether.local/tether-bench:dev
        imagePullPolicy: IfNotPresent
        command: ["/bin/sh", "-c", "echo 'db: prod' > /cfg/app.yaml"]
        volumeMounts:
        - {name: config, mountPath: /cfg}
      containers:
      - name: app
        image: tether.local/ip-info:dev
        imagePullPolicy: IfNotPresent
        env:
        - {name: MARKER, value: "pweb"}
        - {name: PORT, value: "8080"}
        - {name: DB_PASSWORD, value: "hunter2"}
        - {name: API_PASSWORD, value: "swordfish"}
        - {name: DB_HOST, value: "redis"}
        readinessProbe:
          httpGet: {path: /1.2.3.4, port: 8080}
          periodSeconds: 1
        ports:
        - {name: http, containerPort: 8080}
        volumeMounts:
        - {name: config, mountPath: /app/config}
        - {name: data, mountPath: /app/data}
      volumes:
      - {name: config, emptyDir: {}}
      - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: pweb, namespace: %[1]s}
spec:
  selector: {app: pweb}
  ports:
  - {port: 80, targetPort: http}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: redis
        image: tether.local/redis:dev
        imagePullPolicy: IfNotPresent
        args: ["--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        ports:
        - {containerPort: 6379}
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: %[1]s}
spec:
  selector: {app: redis}
  ports:
  - {port: 6379, targetPort: 6379}
`, ns)
}

// policy objects of the scenario, as a platform team writes them.
const (
	clusterPolicyYAML = `apiVersion: policies.tether.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: e2e-no-unfiltered-steal}
spec:
  selector: {matchLabels: {e2e-policy: "on"}}
  block: [steal-without-filter]
`
	requireUserYAML = `apiVersion: policies.tether.dev/v1alpha1
kind: Policy
metadata: {name: require-user, namespace: %s}
spec:
  targetPath: deployment/pweb
  incoming:
    requireHeaderFilter: '^x-tether-user: .+$'
`
	sensitiveYAML = `apiVersion: policies.tether.dev/v1alpha1
kind: Policy
metadata: {name: sensitive, namespace: %[1]s}
spec:
  targetPath: deploy/pweb
  env:
    exclude: ["*_PASSWORD"]
  fs:
    readOnly: ['^/app/config(/|$)']
  outgoing:
    block:
    - hostname: '^redis\.%[1]s\.svc\.cluster\.local$'
`
)

// testPolicies: the platform team's Policies and ClusterPolicies, as a
// developer with only tether-user meets them, and as a raw protocol
// client does.
func testPolicies(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ns := newNamespace(t, "e2e-policies", nil)
	apply(t, []byte(policiesYAML(ns)))
	waitDeployments(t, ns, 2*time.Minute)
	sub, kc := serviceAccountUser(t, dir, ns, "e2e-dev")
	bindTetherUser(t, ns, "e2e-dev", deploy.UserRole, sub)
	env := []string{"KUBECONFIG=" + kc}
	apply(t, []byte(clusterPolicyYAML))
	t.Cleanup(func() {
		dyn.Resource(policiesv1.ClusterPoliciesResource).Delete(ctx, "e2e-no-unfiltered-steal", metav1.DeleteOptions{})
	})
	apply(t, []byte(fmt.Sprintf(requireUserYAML, ns)))
	apply(t, []byte(fmt.Sprintf(sensitiveYAML, ns)))
	url := serviceURL(t, ns, "pweb")
	redisSvc, err := client.CoreV1().Services(ns).Get(ctx, "redis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	redisPod := waitPodsReady(t, ns, "app=redis", 1, time.Minute)[0]
	webPod := waitPodsReady(t, ns, "app=pweb", 1, time.Minute)[0]

	t.Run("steal", func(t *testing.T) {
		for _, tc := range []struct {
			name, filter, policy string
		}{
			{"unfiltered", "", "ClusterPolicy e2e-no-unfiltered-steal refuses a steal without an HTTP filter (block: steal-without-filter)"},
			{"another_header", "^x-other: e2e$", "Policy " + ns + "/require-user refuses a steal with HTTP filter"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				yml := "incoming:\n  mode: steal\n"
				if tc.filter != "" {
					yml += "  http_filter:\n    header_filter: \"" + tc.filter + "\"\n"
				}
				cfg := writeConfig(t, dir, yml)
				p := startTetherEnv(t, dir, append([]string{localServerEnv + "=8080", localNameEnv + "=policies"}, env...),
					"exec", "-f", cfg, "-n", ns, "-t", "deployment/pweb", "--progress", "plain", "--", os.Args[0])
				p.waitStderr(t, tc.policy, 2*time.Minute)
				// The program's listen got the kernel's refusal, EACCES.
				p.waitStderr(t, "listen: permission denied", 30*time.Second)
				if a := ask(url+"/1.2.3.4", "e2e"); a.err != nil || strings.Contains(a.body, "local policies") {
					t.Errorf("a refused steal took the request: %q %v", a.body, a.err)
				}
				p.stop(t)
			})
		}
		t.Run("conforming", func(t *testing.T) {
			cfg := writeConfig(t, dir, "incoming:\n  mode: steal\n  http_filter:\n    header_filter: \"^x-tether-user: e2e$\"\n")
			p := startTetherEnv(t, dir, append([]string{localServerEnv + "=8080", localNameEnv + "=policies"}, env...),
				"exec", "-f", cfg, "-n", ns, "-t", "deployment/pweb", "--progress", "plain", "--", os.Args[0])
			p.waitStderr(t, "traffic to the target's port 8080 is stolen", 2*time.Minute)
			waitAnswer(t, url, "e2e", "local policies", 30*time.Second, p)
			if strings.Contains(p.Stderr(), "refuses a steal") {
				t.Errorf("a conforming steal was told of a refusal:\n%s", p.Stderr())
			}
			p.stop(t)
		})
	})

	t.Run("outgoing_env_fs", func(t *testing.T) {
		// The config asks for what the policies refuse: the passwords,
		// writes to /app/config.
		cfg := writeConfig(t, dir, "env:\n  include: [DB_PASSWORD, API_PASSWORD, DB_HOST, MARKER]\nfs:\n  mode: write\n  read_write: ['^/app/']\n")
		try := func(host string) string {
			return fmt.Sprintf(`(exec 3<>/dev/tcp/%s/6379 && echo "%s: connected") 2>/dev/null || echo "%s: refused"`, host, host, host)
		}
		script := strings.Join([]string{
			`printenv DB_PASSWORD || echo "no DB_PASSWORD"`,
			`printenv API_PASSWORD || echo "no API_PASSWORD"`,
			`printenv DB_HOST`,
			try("redis"), try(redisSvc.Spec.ClusterIP), try(redisPod.Status.PodIP),
			`curl -sS -m 10 http://pweb/10.1.2.3 || echo "no pweb"`,
			`cat /app/config/app.yaml`,
			`(echo mine > /app/config/app.yaml) 2>&1 | sed 's/.*: //'`,
			`echo ok > /app/data/x && cat /app/data/x`,
		}, "\n")
		out, errOut, code := runTetherEnv(t, dir, 3*time.Minute, env, "exec", "-f", cfg, "-n", ns, "-t", "deployment/pweb", "--progress", "plain", "--", "bash", "-c", script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		want := []string{
			"no DB_PASSWORD", "no API_PASSWORD", "redis",
			"redis: refused", redisSvc.Spec.ClusterIP + ": refused", redisPod.Status.PodIP + ": refused",
			"10.1.2.3: private network (cluster)",
			"db: prod", "Read-only file system", "ok",
		}
		got := lines(out)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("output:\n%s\nwant:\n%s\nstderr:\n%s", out, strings.Join(want, "\n"), errOut)
		}
		// Each rule is told once, with its policy.
		rule := "Policy " + ns + "/sensitive refuses a tcp connection to "
		if n := strings.Count(errOut, rule); n != 1 {
			t.Errorf("the outgoing refusal was told %d times, want once:\n%s", n, errOut)
		}
		if !strings.Contains(errOut, "Policy "+ns+"/sensitive refuses variables API_PASSWORD, DB_PASSWORD (env.exclude: *_PASSWORD)") {
			t.Errorf("the env refusal was not told:\n%s", errOut)
		}
		// The audit trail: an Event on the target, and the operator's log.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
			ev := eventMessages(t, ns, "pweb", "TetherRefused")
			if strings.Contains(ev, rule) && strings.Contains(ev, "system:serviceaccount:"+ns+":e2e-dev") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no TetherRefused Event names the policy and the user: %q", ev)
			}
		}
		if logs := operatorLogs(); !strings.Contains(logs, `"policy":"Policy `+ns+`/sensitive"`) {
			t.Errorf("the operator's log has no refusal line with the policy:\n%s", logs)
		}
	})

	t.Run("raw_client", func(t *testing.T) {
		mux := rawPolicySession(t, kc, ns, webPod.Name)
		// The client forged a grant without policies: the operator's
		// rewrite put them back.
		resp := rawCall(t, mux, protocol.Request{Op: protocol.OpEnv})
		for _, kv := range resp.Env {
			if strings.HasSuffix(strings.SplitN(kv, "=", 2)[0], "_PASSWORD") {
				t.Errorf("the raw client got %s", kv)
			}
		}
		refusedBy(t, "a write of /app/config", rawWrite(t, mux, "/app/config/app.yaml", "mine\n"), syscall.EROFS, "Policy "+ns+"/sensitive")
		if resp := rawWrite(t, mux, "/app/data/raw", "x"); resp.Err() != nil {
			t.Errorf("a write elsewhere (the control): %v", resp.Err())
		}
		refusedBy(t, "a dial of Redis's ClusterIP", rawDial(t, mux, netip.AddrPortFrom(netip.MustParseAddr(redisSvc.Spec.ClusterIP), 6379)), syscall.ECONNREFUSED, "Policy "+ns+"/sensitive")
		refusedBy(t, "a dial of Redis's pod", rawDial(t, mux, netip.AddrPortFrom(netip.MustParseAddr(redisPod.Status.PodIP), 6379)), syscall.ECONNREFUSED, "Policy "+ns+"/sensitive")
		refusedBy(t, "an unfiltered steal", rawCall(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 8080, Mode: protocol.ModeSteal}), syscall.EACCES, "ClusterPolicy e2e-no-unfiltered-steal")
		refusedBy(t, "a steal on another header", rawCall(t, mux, protocol.Request{Op: protocol.OpSubscribe, Port: 8080, Mode: protocol.ModeSteal,
			Filter: &protocol.HTTPFilter{Header: "x-other: me"}}), syscall.EACCES, "Policy "+ns+"/require-user")
		if b, err := client.CoreV1().Pods(ns).GetLogs(webPod.Name, &corev1.PodLogOptions{Container: "app"}).DoRaw(ctx); err == nil && strings.Contains(string(b), "mine") {
			t.Errorf("the pod saw the refused write")
		}
	})

	t.Run("policy_check", func(t *testing.T) {
		cfg := writeConfig(t, dir, "target: deployment/pweb\nincoming:\n  mode: steal\nenv:\n  include: [DB_PASSWORD]\n")
		out, errOut, code := runTetherEnv(t, dir, time.Minute, env, "policy", "check", "-n", ns, "-f", cfg)
		if code != 3 {
			t.Fatalf("tether policy check of a refused config: exit %d, want 3\n%s%s", code, out, errOut)
		}
		for _, want := range []string{
			"Policies that apply to deployment/pweb in " + ns + " (pod " + webPod.Name + "):",
			"ClusterPolicy e2e-no-unfiltered-steal", "Policy " + ns + "/require-user", "Policy " + ns + "/sensitive",
			"outgoing.block: hostname ^redis",
			"ClusterPolicy e2e-no-unfiltered-steal refuses a steal without an HTTP filter",
			"Policy " + ns + "/sensitive refuses variable DB_PASSWORD (env.include) (env.exclude: *_PASSWORD)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("tether policy check does not say %q:\n%s", want, out)
			}
		}
		ok := writeConfig(t, dir, "target: deployment/pweb\nincoming:\n  mode: steal\n  http_filter:\n    header_filter: \"^x-tether-user: me$\"\n")
		if out, errOut, code := runTetherEnv(t, dir, time.Minute, env, "policy", "check", "-n", ns, "-f", ok); code != 0 || !strings.Contains(out, "nothing of it is refused") {
			t.Errorf("a conforming config: exit %d\n%s%s", code, out, errOut)
		}
	})

	t.Run("edit", func(t *testing.T) {
		// A running session, and edits of the policy under it.
		mux := rawPolicySession(t, kc, ns, webPod.Name)
		redis := netip.AddrPortFrom(netip.MustParseAddr(redisSvc.Spec.ClusterIP), 6379)
		refusedBy(t, "before the edit", rawDial(t, mux, redis), syscall.ECONNREFUSED, "Policy "+ns+"/sensitive")
		editPolicy(t, ns, "sensitive", func(spec map[string]any) { delete(spec, "outgoing") })
		edited := time.Now()
		took := waitDial(t, mux, redis, true, 10*time.Second)
		t.Logf("the running session may dial Redis %v after the block was lifted", took.Round(time.Millisecond))
		// A new session has the edit from its start.
		if resp := rawDial(t, rawPolicySession(t, kc, ns, webPod.Name), redis); resp.Err() != nil {
			t.Errorf("a new session %v after the edit: %v", time.Since(edited).Round(time.Millisecond), resp.Err())
		}
		editPolicy(t, ns, "sensitive", func(spec map[string]any) {
			spec["outgoing"] = map[string]any{"block": []any{map[string]any{"cidr": redisSvc.Spec.ClusterIP, "port": int64(6379)}}}
		})
		took = waitDial(t, mux, redis, false, 10*time.Second)
		t.Logf("the running session is refused Redis %v after the block came back", took.Round(time.Millisecond))
	})
}

// rawPolicySession is a session through the operator by the test's own
// client, with a forged grant that has no policies.
func rawPolicySession(t *testing.T, kc, ns, pod string) protocol.Mux {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var conn net.Conn
	for {
		conn, err = kube.DialOperator(ctx, cfg, ns, "deployment.pweb", v1alpha1.TargetConnectOptions{Pod: pod})
		var ce *kube.ConnectError
		if errors.As(err, &ce) && ce.Code == 503 && ctx.Err() == nil {
			// The node's agent was exiting (idle): the operator starts
			// another, as tether exec's retries would find.
			time.Sleep(time.Second)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("connecting through the operator: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := protocol.ClientHandshake(conn, protocol.Hello{Client: "raw", Grant: &protocol.Grant{User: "system:admin"}}); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	mux, err := protocol.NewClientMux(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	return mux
}

func rawCall(t *testing.T, mux protocol.Mux, req protocol.Request) protocol.Response {
	t.Helper()
	st, err := mux.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(30 * time.Second))
	if err := protocol.WriteFrame(st, req); err != nil {
		t.Fatal(err)
	}
	var resp protocol.Response
	if err := protocol.ReadFrame(st, &resp); err != nil {
		t.Fatalf("%s: %v", req.Op, err)
	}
	return resp
}

func rawWrite(t *testing.T, mux protocol.Mux, path, data string) protocol.Response {
	t.Helper()
	st, err := mux.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(30 * time.Second))
	protocol.WriteFrame(st, protocol.Request{Op: protocol.OpWrite, Path: path, Size: int64(len(data))})
	io.WriteString(st, data)
	var resp protocol.Response
	if err := protocol.ReadFrame(st, &resp); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return resp
}

func rawDial(t *testing.T, mux protocol.Mux, dst netip.AddrPort) protocol.Response {
	return rawCall(t, mux, protocol.Request{Op: protocol.OpDial, Network: "tcp", Addr: dst.String()})
}

// waitDial dials dst until it is allowed (or refused), and says how long
// that took; past within it fails.
func waitDial(t *testing.T, mux protocol.Mux, dst netip.AddrPort, allowed bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp := rawDial(t, mux, dst)
		if (resp.Err() == nil) == allowed {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("the running session's dial of %s after %v: %v (refused %+v), want allowed %v", dst, within, resp.Err(), resp.Refused, allowed)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func refusedBy(t *testing.T, what string, resp protocol.Response, errno syscall.Errno, policy string) {
	t.Helper()
	if !errors.Is(resp.Err(), errno) || len(resp.Refused) != 1 || resp.Refused[0].Policy != policy {
		t.Errorf("%s: %v (refused %+v), want %v by %s", what, resp.Err(), resp.Refused, errno, policy)
	}
}

// editPolicy changes the spec of Policy ns/name.
func editPolicy(t *testing.T, ns, name string, edit func(spec map[string]any)) {
	t.Helper()
	var ri dynamic.ResourceInterface = dyn.Resource(policiesv1.PoliciesResource).Namespace(ns)
	for attempt := 0; ; attempt++ {
		u, err := ri.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		spec, _, _ := unstructured.NestedMap(u.Object, "spec")
		edit(spec)
		unstructured.SetNestedMap(u.Object, spec, "spec")
		if _, err = ri.Update(context.Background(), u, metav1.UpdateOptions{}); err == nil {
			return
		}
		if attempt == 5 {
			t.Fatalf("editing Policy %s/%s: %v", ns, name, err)
		}
	}
}
