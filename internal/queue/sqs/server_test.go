package sqs

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Admiral-Piett/goaws/app"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
	"github.com/sirupsen/logrus"

	"github.com/tether-dev/tether/internal/queue"
	"github.com/tether-dev/tether/internal/queue/queuetest"
)

// The tests run against goaws 0.4.5, in process: its HTTP router on a
// loopback httptest server, with the ticker that makes messages visible
// again. goaws keeps its queues in globals, so there is one per test
// binary, and every test names its queues after itself.

var (
	goawsOnce sync.Once
	goawsURL  string
	goawsStop func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if goawsStop != nil {
		goawsStop()
	}
	os.Exit(code)
}

// goaws returns the endpoint of the shared goaws, starting it first.
func goaws(t *testing.T) string {
	t.Helper()
	goawsOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		// Region stays empty: goaws would make queue URLs of host
		// REGION.127.0.0.1.
		app.CurrentEnvironment = app.Environment{
			Host: "127.0.0.1", Port: port, AccountID: "100010001000",
			QueueAttributeDefaults: app.EnvQueueAttributes{VisibilityTimeout: 30, MaximumMessageSize: 262144},
		}
		srv := httptest.NewUnstartedServer(router.New())
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		quit := make(chan struct{})
		go gosqs.PeriodicTasks(100*time.Millisecond, quit)
		goawsURL = srv.URL
		goawsStop = func() { close(quit); srv.Close() }
	})
	return goawsURL
}

// newBroker is a Broker for goaws, with the config's VisibilityTimeout.
func newBroker(t *testing.T, visibility time.Duration) *Broker {
	t.Helper()
	b, err := New(Config{Region: "us-east-1", Endpoint: goaws(t), AccessKeyID: "test", SecretAccessKey: "test", GoAWS: true, VisibilityTimeout: visibility})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// direct is a plain SQS client of goaws, beside the Broker.
func direct(t *testing.T) *sqs.Client {
	t.Helper()
	return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(goaws(t)), Credentials: aws.AnonymousCredentials{}},
		func(o *sqs.Options) { o.Protocol = awsquery.New(schemas.AmazonSQS) })
}

// declare creates a queue named after t with attrs, deleted at its end;
// it returns its name and URL.
func declare(t *testing.T, c *sqs.Client, suffix string, attrs map[string]string) (string, string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%s", t.Name(), time.Now().UnixNano(), suffix)
	out, err := c.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	u := aws.ToString(out.QueueUrl)
	t.Cleanup(func() { _, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(u)}) })
	return name, u
}

// publish sends n messages "m0".."mN-1" to the queue at u, one at a
// time (goaws drops the attributes of batched ones), message i with
// attribute i (Number) and user (String) users[i % len(users)] ("" leaves
// it out).
func publish(t *testing.T, c *sqs.Client, u string, n int, users ...string) {
	t.Helper()
	for i := range n {
		attrs := map[string]types.MessageAttributeValue{"i": {DataType: aws.String("Number"), StringValue: aws.String(fmt.Sprint(i))}}
		if len(users) > 0 && users[i%len(users)] != "" {
			attrs["user"] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(users[i%len(users)])}
		}
		if _, err := c.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String(fmt.Sprintf("m%d", i)), MessageAttributes: attrs}); err != nil {
			t.Fatal(err)
		}
	}
}

// takeAll receives and deletes every message of the queue at u, until
// it has want of them and then one receive found none (10 s at most).
func takeAll(t *testing.T, c *sqs.Client, u string, want int) []types.Message {
	t.Helper()
	var got []types.Message
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(u), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			if _, err := c.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(u), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, out.Messages...)
		if len(out.Messages) == 0 {
			if len(got) >= want {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return got
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// receiveN receives from r until it has n messages (15 s at most).
func receiveN(t *testing.T, r queue.Receiver, n int) []queue.Message {
	t.Helper()
	return queuetest.ReceiveN(t, r, n, 15*time.Second)
}
