package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/cri"
	"github.com/tether-dev/tether/test/bench/report"
)

// The queue-splitting benchmark's namespace and load.
const (
	queuesNS      = "bench-queues"
	queueRate     = 500 // visits per second, for the latencies
	queueLatN     = 3000
	queueBacklogN = 100000
)

// queuesYAML is the demo's Kafka (kfake) and ip-visit-consumer in
// queuesNS, and the QueueSplit of the consumer's topic.
const queuesYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: kafka, namespace: bench-queues}
spec:
  replicas: 1
  selector: {matchLabels: {app: kafka}}
  template:
    metadata: {labels: {app: kafka}}
    spec:
      containers:
      - name: kafka
        image: tether.local/demo-kafka:dev
        imagePullPolicy: IfNotPresent
        env: [{name: ADVERTISE, value: kafka.bench-queues.svc.cluster.local}]
        ports: [{containerPort: 9092}]
        readinessProbe:
          tcpSocket: {port: 9092}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: kafka, namespace: bench-queues}
spec:
  selector: {app: kafka}
  ports: [{port: 9092}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: consumer, namespace: bench-queues}
spec:
  replicas: 1
  selector: {matchLabels: {app: consumer}}
  template:
    metadata: {labels: {app: consumer}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: consumer
        image: tether.local/ip-visit-consumer:dev
        imagePullPolicy: IfNotPresent
        env:
        - {name: KAFKA_BROKERS, value: "kafka:9092"}
        - {name: KAFKA_TOPIC, value: visits}
        - {name: KAFKA_GROUP, value: consumer}
---
apiVersion: queues.tether.dev/v1alpha1
kind: QueueSplit
metadata: {name: consumer, namespace: bench-queues}
spec:
  target: deployment/consumer
  queues:
  - id: visits
    kind: kafka
    nameFrom: {env: KAFKA_TOPIC}
    groupFrom: {env: KAFKA_GROUP}
    kafka:
      brokers: {fromEnv: KAFKA_BROKERS}
`

// TestQueueSplit: what a split costs the deployed consumer on the local
// cluster. The deployed ip-visit-consumer reads topic visits of the
// demo's Kafka; the visits, sent from this machine, carry their send time
// and the consumer logs each one's latency. Baseline: no split. Split: a
// developer's session splits the topic with a filter no visit matches, so
// every visit goes source → the operator's forwarder → the fallback topic
// → the deployed consumer. Latency at a steady rate, then the throughput
// of a backlog, and the CPU the operator (the forwarder) and the consumer
// spent per visit.
func TestQueueSplit(t *testing.T) {
	benchEnabled(t)
	ctx := context.Background()
	installOperator(t)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: queuesNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := deleteNamespace(queuesNS); err != nil {
			t.Error(err)
		}
	})
	manifest := filepath.Join(binDir, "queues.yaml")
	os.WriteFile(manifest, []byte(queuesYAML), 0o644)
	mustRun(t, time.Minute, kubeEnv(), kubectl, "apply", "-f", manifest)
	for _, app := range []string{"kafka", "consumer"} {
		if _, err := readyPodIn(queuesNS, "app="+app, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := client.CoreV1().Services(queuesNS).Get(ctx, "kafka", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := svc.Spec.ClusterIP
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(host)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ip, port)) // kfake advertises its Service's name
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(net.JoinHostPort(ip, "9092")), kgo.Dialer(dial), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = waitFor(time.Minute, func() error { // until kube-proxy serves the Service
		_, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, "visits")
		if errors.Is(err, kerr.TopicAlreadyExists) {
			return nil // the consumer made it
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	phase := 0
	// send sends n visits (rate per second, 0: at once) and returns their
	// ids and send times.
	send := func(n, rate int) (string, map[string]int64) {
		phase++
		prefix := fmt.Sprintf("q%d-", phase)
		sent := make(map[string]int64, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		start := time.Now()
		for i := range n {
			if rate > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
			}
			id := prefix + strconv.Itoa(i)
			now := time.Now().UnixNano()
			sent[id] = now
			wg.Add(1)
			cl.Produce(ctx, &kgo.Record{Topic: "visits", Value: fmt.Appendf(nil, `{"id":%q,"ip":"10.1.2.3","sent":%d}`, id, now)}, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
				wg.Done()
			})
		}
		wg.Wait()
		if failed != nil {
			t.Fatalf("producing visits: %v", failed)
		}
		return prefix, sent
	}
	// received waits until the deployed consumer logged every visit of
	// prefix: their latencies (µs) and when the last came.
	received := func(prefix string, sent map[string]int64) ([]float64, time.Time) {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			lat := consumerLatencies(t, prefix)
			if len(lat) >= len(sent) {
				var xs []float64
				var last int64
				for id, us := range lat {
					xs = append(xs, us)
					last = max(last, sent[id]+int64(us*1000))
				}
				return xs, time.Unix(0, last)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the consumer logged %d of %d visits %s* in 3 minutes", len(lat), len(sent), prefix)
			}
			time.Sleep(time.Second)
		}
	}
	type side struct {
		lat               []float64
		rate, opCPU, cCPU float64
	}
	measure := func() side {
		var s side
		prefix, sent := send(200, queueRate) // warm-up: the consumer's group joined, the path warm
		received(prefix, sent)
		prefix, sent = send(queueLatN, queueRate)
		s.lat, _ = received(prefix, sent)
		op, cons := operatorPIDs(t), consumerPIDs(t)
		op0, c0 := op.cpu(), cons.cpu()
		t0 := time.Now()
		prefix, sent = send(queueBacklogN, 0)
		_, last := received(prefix, sent)
		s.rate = float64(queueBacklogN) / last.Sub(t0).Seconds()
		s.opCPU, s.cCPU = (op.cpu()-op0)*1000/queueBacklogN, (cons.cpu()-c0)*1000/queueBacklogN // µs per visit
		return s
	}
	base := measure()

	cfg := writeConfig(t, "queues-split", "30s", "target: deployment/consumer\nnamespace: "+queuesNS+
		"\nsplit_queues:\n  visits:\n    message_filter:\n      x-tether-user: \"^nobody$\"\n")
	sess := start(t, binDir, tetherBin, "exec", "-f", cfg, "--progress", "plain", "--", "sleep", "3600")
	sess.wait(t, "visits → visits-tether-", 5*time.Minute)
	if _, err := readyPodIn(queuesNS, "app=consumer", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	split := measure()
	sess.stop(t)

	us := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = x / 1000
		}
		return out
	}
	what := fmt.Sprintf("%d visits at %d/s from this machine to the demo's Kafka (kfake) in the cluster", queueLatN, queueRate)
	bwhat := fmt.Sprintf("a backlog of %d visits sent at once", queueBacklogN)
	noSplit, withSplit := "deployed consumer, no split", "deployed consumer, split: forwarder → fallback topic"
	one := func(label, cmd string, v float64) report.Measure { return report.Runs(label, cmd, []float64{v}) }
	lat := func(stat string) report.Row {
		return report.Row{Name: "visit latency to the deployed consumer, " + stat, Stat: stat, Unit: "ms",
			Baseline: report.Samples(noSplit, what, us(base.lat)), Tether: report.Samples(withSplit, what, us(split.lat)), Summary: stat == "p50"}
	}
	writeResults(t, report.File{
		Name:  "queues-cluster",
		Title: "queue splitting on the local cluster: the deployed consumer without a split vs with one (every visit through the operator's forwarder)",
		Notes: []string{
			"one operator replica; the split's session filters on x-tether-user: ^nobody$, so every visit goes to the fallback topic (the deployed consumer's while the split runs)",
			"latency: send time (in the visit) to the consumer's log line, same node clock; throughput: the backlog's visits over the time from its first send to the last one's arrival",
			fmt.Sprintf("CPU per visit of the backlog: operator (the forwarder) %s without a split, %s with; the consumer %s and %s (user+system of their containers' processes)",
				report.Num(base.opCPU, "µs"), report.Num(split.opCPU, "µs"), report.Num(base.cCPU, "µs"), report.Num(split.cCPU, "µs")),
		},
		Rows: []report.Row{lat("p50"), lat("p99"),
			{Name: "backlog throughput to the deployed consumer", Stat: "median", Unit: "visits/s", HigherIsBetter: true,
				Baseline: one(noSplit, bwhat, base.rate), Tether: one(withSplit, bwhat, split.rate), Summary: true},
			{Name: "CPU per visit, operator + consumer", Stat: "median", Unit: "µs",
				Baseline: one(noSplit, bwhat, base.opCPU+base.cCPU), Tether: one(withSplit, bwhat, split.opCPU+split.cCPU)},
		},
	})
}

var latencyLine = regexp.MustCompile(`"id":"([^"]+)".*latency_us=(\d+)`)

// consumerLatencies reads the logs of the consumer's running pods: the
// latency (µs) of each visit whose id starts with prefix.
func consumerLatencies(t *testing.T, prefix string) map[string]float64 {
	t.Helper()
	pods, err := client.CoreV1().Pods(queuesNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app=consumer"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		raw, err := client.CoreV1().Pods(queuesNS).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(raw), "\n") {
			if m := latencyLine.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[1], prefix) {
				v, _ := strconv.ParseFloat(m[2], 64)
				out[m[1]] = v
			}
		}
	}
	return out
}

// consumerPIDs finds the running consumer pod's processes.
func consumerPIDs(t *testing.T) procs {
	t.Helper()
	p, err := readyPodIn(queuesNS, "app=consumer", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := cri.ParseContainerID(p.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	return procs{containerPIDs(id)}
}
