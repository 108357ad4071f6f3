package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// rabbitmqYAML is Debian's rabbitmq-server and an ip-visit-consumer that
// consumes queue visits from it.
func rabbitmqYAML(ns string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: rabbitmq, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: rabbitmq}}
  template:
    metadata: {labels: {app: rabbitmq}}
    spec:
      containers:
      - name: rabbitmq
        image: tether.local/rabbitmq:dev
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: 5672}]
        readinessProbe:
          tcpSocket: {port: 5672}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: rabbitmq, namespace: %[1]s}
spec:
  selector: {app: rabbitmq}
  ports: [{port: 5672}]
`, ns) + consumerYAML(ns, "QUEUE_KIND: rabbitmq", "RABBITMQ_URL: \"amqp://guest:guest@rabbitmq:5672/\"", "RABBITMQ_QUEUE: visits")
}

// consumerYAML is ip-visit-consumer's Deployment in ns with env, each
// "NAME: VALUE".
func consumerYAML(ns string, env ...string) string {
	y := fmt.Sprintf(`---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ip-visit-consumer, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: ip-visit-consumer}}
  template:
    metadata: {labels: {app: ip-visit-consumer}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: consumer
        image: tether.local/ip-visit-consumer:dev
        imagePullPolicy: IfNotPresent
        env:
`, ns)
	for _, e := range env {
		name, value, _ := strings.Cut(e, ": ")
		y += fmt.Sprintf("        - {name: %s, value: %s}\n", name, value)
	}
	return y
}

// rabbitmqSplitYAML is the platform team's QueueSplit for it.
const rabbitmqSplitYAML = `apiVersion: queues.tether.dev/v1alpha1
kind: QueueSplit
metadata: {name: ip-visit-consumer}
spec:
  target: deployment/ip-visit-consumer
  queues:
  - id: visits
    kind: rabbitmq
    nameFrom: {env: RABBITMQ_QUEUE}
    rabbitmq:
      url: {fromEnv: RABBITMQ_URL}
`

// testQueueSplitRabbitMQ is runSplitScenario on RabbitMQ: visits published
// to queue visits with an x-tether-user header.
func testQueueSplitRabbitMQ(t *testing.T) {
	ns := newNamespace(t, "e2e-rabbitmq", nil)
	apply(t, []byte(rabbitmqYAML(ns)))
	waitDeployments(t, ns, 3*time.Minute)
	svc, err := client.CoreV1().Services(ns).Get(context.Background(), "rabbitmq", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := "amqp://guest:guest@" + net.JoinHostPort(svc.Spec.ClusterIP, "5672") + "/"
	var conn *amqp.Connection
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if conn, err = amqp.Dial(url); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RabbitMQ at %s: %v", url, err)
		}
	}
	t.Cleanup(func() { conn.Close() })
	pub, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Confirm(false); err != nil {
		t.Fatal(err)
	}
	// The deployed consumer declares the queue; wait for it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		st, err := ch.QueueDeclarePassive("visits", true, false, false, false, nil)
		if err == nil {
			ch.Close()
			if st.Consumers > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deployed consumer does not consume queue visits: %+v %v", st, err)
		}
	}
	dir := t.TempDir()
	runSplitScenario(t, splitScenario{
		ns: ns, deployment: "ip-visit-consumer", manifest: []byte(rabbitmqSplitYAML), source: "visits",
		nameKey: "RABBITMQ_QUEUE", restored: []string{"RABBITMQ_QUEUE", "RABBITMQ_URL", "QUEUE_KIND"},
		dir: dir, devEnv: splitterUser(t, dir, ns),
		send: func(t *testing.T, user, id string) {
			h := amqp.Table{}
			if user != "" {
				h["x-tether-user"] = user
			}
			dc, err := pub.PublishWithDeferredConfirmWithContext(context.Background(), "", "visits", false, false, amqp.Publishing{
				Headers: h, ContentType: "application/json", DeliveryMode: amqp.Persistent,
				Body: fmt.Appendf(nil, `{"id":%q,"ip":"10.1.2.3"}`, id),
			})
			if err == nil {
				var ok bool
				if ok, err = dc.WaitContext(context.Background()); err == nil && !ok {
					err = fmt.Errorf("nack")
				}
			}
			if err != nil {
				t.Fatalf("publishing visit %s: %v", id, err)
			}
		},
		leftovers: func(t *testing.T, seen []string) []string {
			var left []string
			for _, name := range seen {
				ch, err := conn.Channel()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err == nil {
					left = append(left, name)
					ch.Close()
				}
			}
			return left
		},
	})
}
