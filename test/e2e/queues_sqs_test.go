package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/operator"
)

// sqsYAML is goaws (standing in for Amazon SQS, with queue ip-visits) and
// an ip-visit-consumer that receives from it.
func sqsYAML(ns string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: goaws, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: goaws}}
  template:
    metadata: {labels: {app: goaws}}
    spec:
      containers:
      - name: goaws
        image: tether.local/goaws:dev
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: 4100}]
        readinessProbe:
          tcpSocket: {port: 4100}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: goaws, namespace: %[1]s}
spec:
  selector: {app: goaws}
  ports: [{port: 4100}]
`, ns) + consumerYAML(ns, "QUEUE_KIND: sqs", "SQS_QUEUE_URL: \"http://goaws:4100/000000000000/ip-visits\"", "SQS_EMULATOR: goaws")
}

// sqsSplitYAML is the platform team's QueueSplit for it: the queue's name
// is the last part of the URL the consumer reads.
const sqsSplitYAML = `apiVersion: queues.tether.dev/v1alpha1
kind: QueueSplit
metadata: {name: ip-visit-consumer}
spec:
  target: deployment/ip-visit-consumer
  queues:
  - id: visits
    kind: sqs
    nameFrom: {env: SQS_QUEUE_URL, regex: "/([^/]+)$"}
    sqs:
      endpoint: {value: "http://goaws:4100"}
      region: {value: us-east-1}
      emulator: goaws
`

// testQueueSplitSQS is runSplitScenario on SQS (goaws): visits sent to
// queue ip-visits with an x-tether-user message attribute.
func testQueueSplitSQS(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-sqs", nil)
	apply(t, []byte(sqsYAML(ns)))
	waitDeployments(t, ns, 3*time.Minute)
	svc, err := client.CoreV1().Services(ns).Get(ctx, "goaws", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "4100")
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), Credentials: aws.AnonymousCredentials{}},
		func(o *sqs.Options) { o.Protocol = awsquery.New(schemas.AmazonSQS) })
	queueURL := endpoint + "/000000000000/ip-visits"
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if _, err = c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL)}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goaws at %s: %v", endpoint, err)
		}
	}
	dir := t.TempDir()
	runSplitScenario(t, splitScenario{
		ns: ns, deployment: "ip-visit-consumer", manifest: []byte(sqsSplitYAML), source: "ip-visits",
		nameKey: "SQS_QUEUE_URL", restored: []string{"SQS_QUEUE_URL", "SQS_EMULATOR", "QUEUE_KIND"},
		dir: dir, devEnv: splitterUser(t, dir, ns),
		send: func(t *testing.T, user, id string) {
			in := &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(fmt.Sprintf(`{"id":%q,"ip":"10.1.2.3"}`, id))}
			if user != "" {
				in.MessageAttributes = map[string]sqstypes.MessageAttributeValue{"x-tether-user": {DataType: aws.String("String"), StringValue: aws.String(user)}}
			}
			if _, err := c.SendMessage(ctx, in); err != nil {
				t.Fatalf("sending visit %s: %v", id, err)
			}
		},
		leftovers: func(t *testing.T, _ []string) []string {
			out, err := c.ListQueues(ctx, &sqs.ListQueuesInput{})
			if err != nil {
				t.Fatalf("listing goaws's queues: %v", err)
			}
			var left []string
			for _, u := range out.QueueUrls {
				if name := path.Base(u); strings.Contains(name, "-tether-") {
					left = append(left, name)
				}
			}
			return left
		},
	})
}

// testQueueSplitNamespaceDeleted: a namespace deleted while its workload's
// queue is split (the developer's tether killed first, as a CI runner's
// would be) goes away: the QueueSplit's finalizer does not hold it once
// there is no workload left to restore.
func testQueueSplitNamespaceDeleted(t *testing.T) {
	ctx := context.Background()
	ns := sqsSplitNamespace(t, "e2e-sqs-gone", nil)
	p := startSQSSplit(t, ns)
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	if err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			qs, _ := dyn.Resource(queuesv1.GroupVersionResource).Namespace(ns).List(ctx, metav1.ListOptions{})
			t.Fatalf("namespace %s is still there 2 minutes after its deletion; its QueueSplits: %v\n%s", ns, qs, operatorLogs())
		}
	}
}

// testQueueSplitGitOps: a workload Argo CD manages is split with a warning
// that its sync would undo the patch; when "Argo CD" (the test) does put
// the environment back, the split ends with a Warning Event naming it, the
// developer's tether is told, and the operator does not patch it again.
func testQueueSplitGitOps(t *testing.T) {
	ctx := context.Background()
	ns := sqsSplitNamespace(t, "e2e-sqs-gitops", map[string]string{"argocd.argoproj.io/instance": "shop"})
	deps := client.AppsV1().Deployments(ns)
	orig, _ := deploymentEnv(t, ns, "ip-visit-consumer")
	p := startSQSSplit(t, ns)
	if ev := eventMessages(t, ns, "ip-visit-consumer", "TetherWorkloadPatched"); !strings.Contains(ev, "Argo CD (application shop) manages it") {
		t.Errorf("the patch's Event does not warn of Argo CD: %q", ev)
	}
	// Argo CD syncs: the container's environment as in git.
	for attempt := 0; ; attempt++ {
		d, err := deps.Get(ctx, "ip-visit-consumer", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		env := d.Spec.Template.Spec.Containers[0].Env
		for i := range env {
			env[i].Value = orig[env[i].Name]
		}
		if _, err = deps.Update(ctx, d, metav1.UpdateOptions{}); err == nil {
			break
		}
		if attempt == 5 {
			t.Fatalf("reverting the environment: %v", err)
		}
	}
	p.waitStderr(t, "this session no longer splits", 2*time.Minute)
	if !strings.Contains(p.Stderr(), "Argo CD (application shop) changed deployment/ip-visit-consumer's environment back") {
		t.Errorf("the developer was not told who ended the split:\n%s", p.Stderr())
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if qs := getSplit(t, ns, "ip-visit-consumer"); qs.Status.Patch == nil && qs.Status.Phase == queuesv1.PhaseIdle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the split did not end after the revert: %+v\n%s", getSplit(t, ns, "ip-visit-consumer").Status, operatorLogs())
		}
	}
	if ev := eventMessages(t, ns, "ip-visit-consumer", "TetherSplitFailed"); !strings.Contains(ev, "Argo CD (application shop) changed") {
		t.Errorf("no Warning Event names Argo CD: %q", ev)
	}
	// The operator does not fight: the environment stays as Argo CD set it
	// while the developer's tether still runs and keeps asking.
	time.Sleep(15 * time.Second)
	env, ann := deploymentEnv(t, ns, "ip-visit-consumer")
	for k, v := range orig {
		if env[k] != v {
			t.Errorf("after the revert, %s is %q again (want %q): the operator patched it back", k, env[k], v)
		}
	}
	if ann[operator.AnnotationSplit] != "" {
		t.Errorf("the workload is annotated %s again", operator.AnnotationSplit)
	}
}

// sqsSplitNamespace is namespace name with goaws, ip-visit-consumer
// (its Deployment labelled labels) and the QueueSplit of its queue.
func sqsSplitNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	ns := newNamespace(t, name, nil)
	apply(t, []byte(sqsYAML(ns)))
	if len(labels) > 0 {
		deps := client.AppsV1().Deployments(ns)
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // its controller writes it too
			d, err := deps.Get(ctx, "ip-visit-consumer", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Labels == nil {
				d.Labels = map[string]string{}
			}
			maps.Copy(d.Labels, labels)
			_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(sqsSplitYAML), &obj); err != nil {
		t.Fatal(err)
	}
	splits := dyn.Resource(queuesv1.GroupVersionResource).Namespace(ns)
	if _, err := splits.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the QueueSplit: %v", err)
	}
	t.Cleanup(func() { splits.Delete(ctx, "ip-visit-consumer", metav1.DeleteOptions{}) })
	waitDeployments(t, ns, 3*time.Minute)
	return ns
}

// startSQSSplit starts a developer's session (only tether-user in ns)
// that splits queue visits of ns's consumer, its program sleeping, and
// returns once the split is ready.
func startSQSSplit(t *testing.T, ns string) *tetherProc {
	t.Helper()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "target: deployment/ip-visit-consumer\nnamespace: "+ns+
		"\nsplit_queues:\n  visits:\n    message_filter:\n      x-tether-user: \"^me$\"\n")
	p := startTetherEnv(t, dir, splitterUser(t, dir, ns), "exec", "-f", cfg, "--progress", "plain", "--", "sleep", "3600")
	p.waitStderr(t, "visits → ip-visits-tether-", 3*time.Minute)
	// And its session: a test that changes the workload next must not
	// replace the pod tether is still connecting to.
	p.waitStderr(t, "connecting to the agent: session ", 2*time.Minute)
	return p
}

// eventMessages joins the messages of the Events with reason on object
// name in ns.
func eventMessages(t *testing.T, ns, name, reason string) string {
	t.Helper()
	evs, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=" + reason})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range evs.Items {
		msgs = append(msgs, e.Message)
	}
	return strings.Join(msgs, "\n")
}
