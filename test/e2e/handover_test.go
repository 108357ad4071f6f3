package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchDeploymentYAML is one pod of the benchmarks' server (X-Who: pod,
// /slow?ms=N) behind a Service on port 80.
func benchDeploymentYAML(ns, name string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: tether.local/tether-bench:dev
        imagePullPolicy: IfNotPresent
        args: ["-listen", ":8080", "-who", "pod"]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {app: %[1]s}
  ports:
  - {port: 80, targetPort: 8080}
`, name, ns)
}

// keepAliveClient sends POSTs (which Go's client never retries once
// sent, so a reset request counts as failed) on one keep-alive
// connection at a time, one after the other, pausing between them.
type keepAliveClient struct {
	name, url, user string
	pause           time.Duration
	c               *http.Client
	sent, newConns  atomic.Int64
	mu              sync.Mutex
	failures        []string
	failedAt        []time.Time    // when each failed request was sent
	answers         map[string]int // by who answered (X-Who, or "local")
	lastLocal       time.Time
}

func newKeepAliveClient(name, url, user string, pause time.Duration) *keepAliveClient {
	return &keepAliveClient{name: name, url: url, user: user, pause: pause, answers: map[string]int{},
		c: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Hour}}}
}

func (k *keepAliveClient) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		k.once()
		select {
		case <-stop:
			return
		case <-time.After(k.pause):
		}
	}
}

func (k *keepAliveClient) once() {
	req, _ := http.NewRequest("POST", k.url, strings.NewReader("request body"))
	if k.user != "" {
		req.Header.Set("x-tether-user", k.user)
	}
	var reused bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
	}))
	k.sent.Add(1)
	start := time.Now()
	resp, err := k.c.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s: %q", resp.Status, body)
		}
	}
	if !reused {
		k.newConns.Add(1)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.failures = append(k.failures, fmt.Sprintf("%s sent %s (reused connection %v): %v", k.name, start.Format("15:04:05.000"), reused, err))
		k.failedAt = append(k.failedAt, start)
		return
	}
	who := resp.Header.Get("X-Who")
	if strings.Contains(string(body), "local") {
		who = "local"
		k.lastLocal = time.Now()
	}
	k.answers[who]++
}

func (k *keepAliveClient) localSince(t time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastLocal.After(t)
}

// TestStealStartStopNoLoss: sessions that steal filtered requests start
// and stop 20 times on a Deployment while other users' keep-alive clients
// send slow requests (300 ms answers) back to back: none of their
// requests may fail. Every fifth session waits for the agent to linger
// out first, so the agent's own end (its drain) is covered too. A client
// of the session's filter that pauses 1.5 s between requests on one
// keep-alive connection, opened before the session, shows that such a
// connection is handed over (closed when quiet, reconnected through the
// agent): its requests reach the local program during every session.
func TestStealStartStopNoLoss(t *testing.T) {
	requireE2E(t)
	ns := newNamespace(t, "e2e-handover", nil)
	apply(t, []byte(benchDeploymentYAML(ns, "bench")))
	waitDeployments(t, ns, 2*time.Minute)
	base := serviceURL(t, ns, "bench")
	waitServed(t, base+"/small", "", "ok")
	dir := t.TempDir()
	cfg := agentConfig(t, dir, `incoming:
  mode: steal
  http_filter:
    header_filter: "^x-tether-user: handover$"`)

	slow := []*keepAliveClient{
		newKeepAliveClient("slow-1", base+"/slow?ms=300", "", 0),
		newKeepAliveClient("slow-2", base+"/slow?ms=300", "", 0),
	}
	pausing := newKeepAliveClient("pausing", base+"/small", "", 1500*time.Millisecond)
	// The filtered client's answers take 20 ms, so that the kernel's
	// clock (1-10 ms ticks) orders request and answer: a connection seen
	// quiet after an answer is handed over after 1 s; when the clock
	// cannot tell (the pausing client's 3-byte answers), only after 10 s
	// (see docs), which the 1.5 s pauses never reach.
	mine := newKeepAliveClient("filtered", base+"/slow?ms=20", "handover", 1500*time.Millisecond)
	clients := append(slow, pausing, mine)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, k := range clients {
		wg.Add(1)
		go k.run(stop, &wg)
	}
	stopped := false
	end := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(end)
	time.Sleep(2 * time.Second)

	const sessions = 20
	missed := 0
	var stops [][2]time.Time // from SIGINT until tether exited
	for i := range sessions {
		if i%5 == 4 {
			// Let the agent linger out (linger 2s) and drain.
			waitNoAgent(t, ns, 30*time.Second)
		}
		began := time.Now()
		t.Logf("session %d starts at %s", i+1, began.Format("15:04:05.000"))
		p := startTetherEnv(t, dir, []string{localServerEnv + "=8080"}, "exec", "-f", cfg, "-n", ns, "-t", "deployment/bench", "--progress", "plain", "--", os.Args[0])
		p.waitStderr(t, "traffic to the target's port 8080 is stolen", 3*time.Minute)
		// The filtered client's connection was opened before the session
		// (or passed through by the agent since): it reaches the local
		// program once it has been handed over.
		deadline := time.Now().Add(10 * time.Second)
		for !mine.localSince(began) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if !mine.localSince(began) {
			missed++
			t.Errorf("session %d: the filtered keep-alive client got no answer from the local program within 10s", i+1)
		}
		stopping := time.Now()
		t.Logf("session %d stops at %s", i+1, stopping.Format("15:04:05.000"))
		p.stop(t)
		stops = append(stops, [2]time.Time{stopping, time.Now()})
	}
	end()
	var failed []string
	for _, k := range clients {
		k.mu.Lock()
		t.Logf("%s: %d requests on %d connections, answers %v, %d failed", k.name, k.sent.Load(), k.newConns.Load(), k.answers, len(k.failures))
		if k == mine {
			// The session's own requests: one in flight to the local
			// program as its session ends may fail (the program is
			// stopping); any other failure counts.
			for i, f := range k.failures {
				if at := k.failedAt[i]; !within(at, stops, time.Second) {
					failed = append(failed, f)
				} else {
					t.Logf("a request of the session's own (sent as its session ended) failed: %s", f)
				}
			}
		} else {
			failed = append(failed, k.failures...)
		}
		k.mu.Unlock()
	}
	for _, k := range append(slow, pausing) {
		if n := k.answers["local"]; n > 0 {
			t.Errorf("%s: %d unmatched requests were answered by a session's local program", k.name, n)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d requests failed while %d sessions started and stopped: %v", len(failed), sessions, strings.Join(failed[:min(len(failed), 40)], "\n"))
	}
	if n := slow[0].sent.Load() + slow[1].sent.Load(); n < sessions*10 {
		t.Errorf("the slow clients sent only %d requests", n)
	}
	if left := leftovers(t, ns, 90*time.Second); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	pods := waitPodsReady(t, ns, "app=bench", 1, time.Minute)
	if left := netfilterLeftovers(t, containerPID(t, &pods[0], "app")); len(left) > 0 {
		t.Errorf("left behind in the target's network namespace: %v", left)
	}
}

// within reports whether t falls in one of the windows, the end of each
// extended by slack.
func within(t time.Time, windows [][2]time.Time, slack time.Duration) bool {
	for _, w := range windows {
		if !t.Before(w[0]) && t.Before(w[1].Add(slack)) {
			return true
		}
	}
	return false
}

// waitNoAgent waits until ns has no agent pod or Job.
func waitNoAgent(t *testing.T, ns string, timeout time.Duration) {
	t.Helper()
	if left := leftovers(t, ns, timeout); len(left) > 0 {
		t.Fatalf("the agent did not linger out within %v: %v", timeout, left)
	}
}
