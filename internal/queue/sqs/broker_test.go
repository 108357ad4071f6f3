package sqs

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no region"},
		{Config{Region: "eu-west-1", AccessKeyID: "AKIA"}, "both"},
		{Config{Region: "eu-west-1", SecretAccessKey: "secret"}, "both"},
		{Config{Region: "eu-west-1"}, "no keys"},
		{Config{Region: "eu-west-1", Endpoint: "goaws:4100"}, "not an http:// or https:// URL"},
		{Config{Region: "eu-west-1", Endpoint: "ftp://goaws:4100"}, "not an http:// or https:// URL"},
		{Config{Region: "eu-west-1", Endpoint: "http://user:secret@goaws:4100"}, "not an http:// or https:// URL"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []Config{
		{Region: "eu-west-1", AccessKeyID: "AKIA", SecretAccessKey: "secret"},
		{Region: "us-east-1", Endpoint: "http://goaws:4100"},
	} {
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close()
	for _, goAWS := range []bool{false, true} {
		b, err := New(Config{Region: "us-east-1", Endpoint: endpoint, AccessKeyID: "AKIATEST", SecretAccessKey: "verysecret", GoAWS: goAWS})
		if err != nil {
			t.Fatal(err)
		}
		err = b.Check(ctxFor(t, 20*time.Second), queue.Queue{Name: "visits"})
		qe, ok := errors.AsType[*queue.Error](err)
		if !ok || qe.Kind != queue.KindSQS || !strings.Contains(qe.Hint, "check the QueueSplit's sqs endpoint ("+endpoint+")") ||
			strings.Contains(err.Error(), "verysecret") || errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("Check on a closed port (GoAWS %v) = %v, want a queue.Error saying to check the endpoint, without the secret", goAWS, err)
		}
	}
}

// refuser answers every request with SQS's error code, in the JSON
// protocol or, for goAWS, the query one.
func refuser(t *testing.T, code string, goAWS bool) *Broker {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if goAWS {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>no</Message></Error><RequestId>1</RequestId></ErrorResponse>`, code)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Query-Error", code+";Sender")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"__type":"com.amazon.coral.service#%s","message":"no"}`, code)
	}))
	t.Cleanup(srv.Close)
	b, err := New(Config{Region: "eu-west-1", Endpoint: srv.URL, AccessKeyID: "AKIATEST", SecretAccessKey: "secret", GoAWS: goAWS})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRefusedHints(t *testing.T) {
	for _, tc := range []struct{ code, want string }{
		{"AccessDenied", "grant them sqs:* on the queue and on its copies, named QUEUE-tether-*"},
		{"AccessDeniedException", "grant them sqs:*"},
		{"InvalidClientTokenId", "check the QueueSplit's sqs.accessKeyID and sqs.secretAccessKey"},
		{"SignatureDoesNotMatch", "check the QueueSplit's sqs.accessKeyID"},
	} {
		for _, goAWS := range []bool{false, true} {
			b := refuser(t, tc.code, goAWS)
			err := b.Check(ctxFor(t, 10*time.Second), queue.Queue{Name: "visits"})
			qe, ok := errors.AsType[*queue.Error](err)
			if !ok || !strings.Contains(qe.Hint, tc.want) || !strings.Contains(err.Error(), tc.code) {
				t.Errorf("Check answered %s (GoAWS %v) = %v, want a hint saying %q", tc.code, goAWS, err, tc.want)
			}
		}
	}
}

func TestNotFound(t *testing.T) {
	b := newBroker(t, 0)
	ctx := ctxFor(t, 30*time.Second)
	missing := queue.Queue{Name: "no-such-queue-" + t.Name()}
	if err := b.Check(ctx, missing); !errors.Is(err, queue.ErrNotFound) || !strings.Contains(err.Error(), "the app creates queue "+missing.Name+": check that it ran and that the QueueSplit names the queue right") {
		t.Errorf("Check(missing) = %v, want ErrNotFound with a hint", err)
	}
	if _, err := b.Open(ctx, missing); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
	if err := b.Send(ctx, missing, []queue.Message{{Value: []byte("x")}}); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Send(missing) = %v, want ErrNotFound", err)
	}
	if _, err := b.Lag(ctx, missing); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Lag(missing) = %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, queue.Queue{Name: "copy-" + missing.Name}, missing); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Create like a missing queue = %v, want ErrNotFound", err)
	}
	// A queue deleted behind the broker's back after it cached its URL.
	c := direct(t)
	name, u := declare(t, c, "gone", nil)
	r, err := b.Open(ctx, queue.Queue{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(u)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Receive(ctx); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Receive from a deleted queue = %v, want ErrNotFound", err)
	}
	if err := b.Send(ctx, queue.Queue{Name: name}, []queue.Message{{Value: []byte("x")}}); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Send to a deleted queue = %v, want ErrNotFound", err)
	}
}

func TestCreateDelete(t *testing.T) {
	b := newBroker(t, 0)
	ctx := ctxFor(t, 30*time.Second)
	c := direct(t)
	like, _ := declare(t, c, "like", map[string]string{"VisibilityTimeout": "45", "DelaySeconds": "2", "ReceiveMessageWaitTimeSeconds": "3"})
	q := queue.Queue{Name: like + "-tether-alice"}
	t.Cleanup(func() { _ = b.Delete(ctx, q) })
	for range 2 {
		if err := b.Create(ctx, q, queue.Queue{Name: like}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	u, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q.Name)})
	if err != nil {
		t.Fatalf("the created queue is not there: %v", err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"VisibilityTimeout": "45", "DelaySeconds": "2", "ReceiveMessageWaitTimeSeconds": "3"} {
		if got := attrs.Attributes[k]; got != want {
			t.Errorf("the copy's %s = %q, want %q (its source's)", k, got, want)
		}
	}
	if err := b.Check(ctx, q); err != nil {
		t.Fatalf("Check of the created queue: %v", err)
	}
	for range 2 {
		if err := b.Delete(ctx, q); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if err := b.Check(ctx, q); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Check after Delete = %v, want ErrNotFound", err)
	}
	// A FIFO queue's copy is FIFO, named so.
	fifo, _ := declare(t, c, "orders.fifo", map[string]string{"FifoQueue": "true"})
	if err := b.Create(ctx, queue.Queue{Name: fifo + "-tether-alice"}, queue.Queue{Name: fifo}); err == nil || !strings.Contains(err.Error(), "name it QUEUE-tether-NAME.fifo") {
		t.Errorf("Create of a FIFO queue's copy not named .fifo = %v, want a refusal", err)
	}
	if err := b.Create(ctx, queue.Queue{Name: like + "-tether-bob.fifo"}, queue.Queue{Name: like}); err == nil || !strings.Contains(err.Error(), "only FIFO queues' names end in .fifo") {
		t.Errorf("Create of a standard queue's copy named .fifo = %v, want a refusal", err)
	}
	fq := queue.Queue{Name: strings.TrimSuffix(fifo, ".fifo") + "-tether-alice.fifo"}
	t.Cleanup(func() { _ = b.Delete(ctx, fq) })
	if err := b.Create(ctx, fq, queue.Queue{Name: fifo}); err != nil {
		t.Fatalf("Create of a FIFO copy: %v", err)
	}
	if err := b.Check(ctx, fq); err != nil {
		t.Fatalf("Check of the FIFO copy: %v", err)
	}
}

func TestLagAndIdle(t *testing.T) {
	b := newBroker(t, 0)
	ctx := ctxFor(t, 30*time.Second)
	c := direct(t)
	name, u := declare(t, c, "src", nil)
	q := queue.Queue{Name: name}
	lag := func(want int64, when string) {
		t.Helper()
		if n, err := b.Lag(ctx, q); err != nil || n != want {
			t.Errorf("Lag %s = %d %v, want %d", when, n, err, want)
		}
	}
	lag(0, "of an empty queue")
	publish(t, c, u, 5)
	lag(5, "after 5 sent")
	r, err := b.Open(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := receiveN(t, r, 5)
	lag(5, "with 5 received and not deleted")
	if err := r.Ack(ctx, got[:2]); err != nil {
		t.Fatal(err)
	}
	lag(3, "after 2 of them were deleted")
	if idle, err := b.Idle(ctx, q); err != nil || !idle {
		t.Errorf("Idle = %v %v, want true (SQS cannot tell)", idle, err)
	}
}
