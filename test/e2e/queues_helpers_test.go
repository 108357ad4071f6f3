package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
)

// podLogs follows the logs of every pod a label selector picks, each from
// its start, as they come and go (a rollout deletes a pod with its logs).
type podLogs struct {
	mu   sync.Mutex
	logs map[string]*strings.Builder
}

func followPodLogs(t *testing.T, ns, selector string) *podLogs {
	t.Helper()
	pl := &podLogs{logs: map[string]*strings.Builder{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err == nil {
				for _, p := range pods.Items {
					if p.Status.Phase != corev1.PodRunning {
						continue
					}
					pl.mu.Lock()
					_, seen := pl.logs[p.Name]
					if !seen {
						pl.logs[p.Name] = &strings.Builder{}
					}
					pl.mu.Unlock()
					if !seen {
						wg.Add(1)
						go func(name string) { defer wg.Done(); pl.follow(ctx, ns, name) }(p.Name)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return pl
}

// follow streams pod name's log, again from where it was if the stream
// breaks while the pod runs.
func (pl *podLogs) follow(ctx context.Context, ns, name string) {
	lines := 0
	for ctx.Err() == nil {
		s, err := client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
		if err != nil {
			return // gone
		}
		sc := bufio.NewScanner(s)
		n := 0
		for sc.Scan() {
			n++
			if n <= lines {
				continue // seen before the stream broke
			}
			lines++
			pl.mu.Lock()
			pl.logs[name].WriteString(sc.Text() + "\n")
			pl.mu.Unlock()
		}
		s.Close()
		time.Sleep(200 * time.Millisecond)
	}
}

func (pl *podLogs) text() string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var b strings.Builder
	for _, l := range pl.logs {
		b.WriteString(l.String())
	}
	return b.String()
}

var visitLine = regexp.MustCompile(`visit: (\{.*?\})`)

// visitIDs counts the visits logged in text by id.
func visitIDs(text string) map[string]int {
	out := map[string]int{}
	for _, m := range visitLine.FindAllStringSubmatch(text, -1) {
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal([]byte(m[1]), &v) == nil && v.ID != "" {
			out[v.ID]++
		}
	}
	return out
}

// visit makes one visit to ip-visit-counter with id and user (x-tether-user).
func visit(t *testing.T, url, user, id string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/", nil)
	if user != "" {
		req.Header.Set("x-tether-user", user)
	}
	req.Header.Set("x-visit-id", id)
	c := &http.Client{Timeout: 10 * time.Second}
	for attempt := 0; ; attempt++ {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if attempt == 2 {
			t.Fatalf("visit %s (%q): %v", id, user, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitIDs waits until got() has every id of want, and returns what it had.
func waitIDs(t *testing.T, what string, want []string, timeout time.Duration, got func() map[string]int) map[string]int {
	t.Helper()
	var have map[string]int
	deadline := time.Now().Add(timeout)
	for {
		have = got()
		missing := 0
		for _, id := range want {
			if have[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return have
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d visits missing after %v", what, missing, len(want), timeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// demoKafka is an admin client for the demo's Kafka, reached from this
// machine: the names it advertises resolve to its Service's ClusterIP.
func demoKafka(t *testing.T) *kadm.Client {
	t.Helper()
	svc, err := client.CoreV1().Services(demoNS).Get(context.Background(), "kafka", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := svc.Spec.ClusterIP
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(host)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(net.JoinHostPort(ip, "9092")), kgo.Dialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// tempTopics lists the demo Kafka's topics that queue splitting made.
func tempTopics(t *testing.T, adm *kadm.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatalf("listing the demo's Kafka topics: %v", err)
	}
	var out []string
	for _, name := range td.Names() {
		if strings.Contains(name, "-tether-") {
			out = append(out, name)
		}
	}
	return out
}

// getSplit reads QueueSplit ns/name.
func getSplit(t *testing.T, ns, name string) *queuesv1.QueueSplit {
	t.Helper()
	u, err := dyn.Resource(queuesv1.GroupVersionResource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("QueueSplit %s/%s: %v", ns, name, err)
	}
	b, _ := u.MarshalJSON()
	var qs queuesv1.QueueSplit
	if err := json.Unmarshal(b, &qs); err != nil {
		t.Fatal(err)
	}
	return &qs
}

// deploymentEnv is deployment ns/name's first container's env and the
// deployment's annotations.
func deploymentEnv(t *testing.T, ns, name string) (map[string]string, map[string]string) {
	t.Helper()
	d, err := client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	return env, d.Annotations
}

// splitDiagnostics, registered in a test, logs when it failed what shows
// where visits went: the sessions' tether output (their visits left out),
// the QueueSplit's status, the target's Events and the operator's logs.
func splitDiagnostics(t *testing.T, ns, split, target string, procs map[string]*tetherProc) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var b strings.Builder
		for name, p := range procs {
			fmt.Fprintf(&b, "--- tether of %s, without its visits:\n", name)
			for _, l := range strings.Split(p.Stderr(), "\n") {
				if l != "" && !visitLine.MatchString(l) {
					b.WriteString(l + "\n")
				}
			}
		}
		if u, err := dyn.Resource(queuesv1.GroupVersionResource).Namespace(ns).Get(context.Background(), split, metav1.GetOptions{}); err == nil {
			st, _ := json.MarshalIndent(u.Object["status"], "", "  ")
			fmt.Fprintf(&b, "--- QueueSplit %s/%s status:\n%s\n", ns, split, st)
		}
		if evs, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + target}); err == nil {
			b.WriteString("--- Events of " + target + ":\n")
			for _, e := range evs.Items {
				fmt.Fprintf(&b, "%s %s %s (x%d): %s\n", e.LastTimestamp.Format(time.TimeOnly), e.Type, e.Reason, e.Count, e.Message)
			}
		}
		b.WriteString("--- tether-operator:\n" + operatorLogs())
		// Last, in a few lines: CI shows the end of a long output.
		b.WriteString("--- in short:\n")
		for name, p := range procs {
			state := "running"
			select {
			case <-p.done:
				state = "exited"
			default:
			}
			var warns []string
			for _, l := range strings.Split(p.Stderr(), "\n") {
				if strings.Contains(l, "warning") || strings.Contains(l, "split") && !visitLine.MatchString(l) {
					warns = append(warns, l)
				}
			}
			fmt.Fprintf(&b, "session %s: tether %s; its last split lines: %q\n", name, state, warns[max(0, len(warns)-3):])
		}
		if u, err := dyn.Resource(queuesv1.GroupVersionResource).Namespace(ns).Get(context.Background(), split, metav1.GetOptions{}); err == nil {
			var qs queuesv1.QueueSplit
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &qs) == nil {
				for _, s := range qs.Status.Sessions {
					fmt.Fprintf(&b, "status session %s (%s): ready %v ending %v error %q, last seen %v ago\n", s.Run, s.User, s.Ready, s.Ending, s.Error, time.Since(s.LastSeen.Time).Round(time.Second))
				}
			}
		}
		t.Logf("what the split did:\n%s", b.String())
	})
}
