package rabbitmq

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
	"github.com/tether-dev/tether/internal/queue/queuetest"
	"github.com/tether-dev/tether/internal/queue/rabbitmq/rabbitmqtest"
)

func TestNewBadURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "no URL"},
		{"http://host/", "want amqp://"},
		{"amqp://user:secret@host:notaport/", "want amqp://"},
	} {
		_, err := New(Config{URL: tc.url})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) = %v, want an error saying %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("New(%q): the error shows the password: %v", tc.url, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	port, err := rabbitmqtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{URL: fmt.Sprintf("amqp://guest:secret@127.0.0.1:%d/", port), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Check(ctxFor(t, 10*time.Second), queue.Queue{Name: "visits"})
	qe, ok := errors.AsType[*queue.Error](err)
	if !ok || !strings.Contains(qe.Hint, "check the QueueSplit's url") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Check on a closed port = %v, want a queue.Error saying to check the url, without the password", err)
	}
}

func TestNotFound(t *testing.T) {
	b := newBroker(t)
	ctx := ctxFor(t, 30*time.Second)
	missing := queue.Queue{Name: "no-such-queue-" + t.Name()}
	if err := b.Check(ctx, missing); !errors.Is(err, queue.ErrNotFound) || !strings.Contains(err.Error(), "the app declares queue") {
		t.Errorf("Check(missing) = %v, want ErrNotFound with a hint", err)
	}
	if idle, err := b.Idle(ctx, missing); err != nil || !idle {
		t.Errorf("Idle(missing) = %v, %v; want idle: nothing consumes a queue that is gone", idle, err)
	}
	if _, err := b.Open(ctx, missing); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
	if err := b.Send(ctx, missing, []queue.Message{{Value: []byte("x")}}); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Send(missing) = %v, want ErrNotFound (the message was unroutable)", err)
	}
	// The broker still works after those: they closed channels, not the
	// connection or the publishing channel for good.
	ch := direct(t)
	q := queue.Queue{Name: declare(t, ch, "after")}
	if err := b.Send(ctx, q, []queue.Message{{Value: []byte("x")}}); err != nil {
		t.Fatalf("Send after the errors: %v", err)
	}
	if err := b.Check(ctx, q); err != nil {
		t.Fatalf("Check after the errors: %v", err)
	}
}

func TestCreateDelete(t *testing.T) {
	b := newBroker(t)
	ctx := ctxFor(t, 30*time.Second)
	ch := direct(t)
	q := queue.Queue{Name: "tether-test-create-" + fmt.Sprint(time.Now().UnixNano())}
	for range 2 {
		if err := b.Create(ctx, q, queue.Queue{}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	st, err := ch.QueueDeclarePassive(q.Name, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("the created queue is not there: %v", err)
	}
	_ = st
	for range 2 {
		if err := b.Delete(ctx, q); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if err := b.Check(ctx, q); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Check after Delete = %v, want ErrNotFound", err)
	}
	// A queue that exists with other arguments is there: not an error.
	other := declareArgs(t, ch, "other", amqp.Table{"x-max-length": int32(1000)})
	if err := b.Create(ctx, queue.Queue{Name: other}, queue.Queue{}); err != nil {
		t.Fatalf("Create of a queue declared with other arguments: %v", err)
	}
}

// declareArgs declares a queue with args; declare's channel may be
// closed by a refused declare, so it takes its own.
func declareArgs(t *testing.T, ch *amqp.Channel, suffix string, args amqp.Table) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s-%d", t.Name(), suffix, time.Now().UnixNano())
	own := direct(t)
	if _, err := own.QueueDeclare(name, true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = own.QueueDelete(name, false, false, false) })
	return name
}

// publish puts n messages on queue name directly, message i with header
// x-i = i and x-tether-user = users[i % len(users)] ("" leaves it out).
func publish(t *testing.T, ch *amqp.Channel, name string, n int, users ...string) {
	t.Helper()
	for i := range n {
		h := amqp.Table{"x-i": int32(i)}
		if len(users) > 0 && users[i%len(users)] != "" {
			h["x-tether-user"] = users[i%len(users)]
		}
		err := ch.PublishWithContext(t.Context(), "", name, false, false, amqp.Publishing{
			Headers: h, Body: fmt.Appendf(nil, "m%d", i), DeliveryMode: amqp.Persistent, MessageId: fmt.Sprint("id-", i),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTripKeepsEverything(t *testing.T) {
	b := newBroker(t)
	ctx := ctxFor(t, 30*time.Second)
	ch := direct(t)
	src, dst := declare(t, ch, "src"), declare(t, ch, "dst")
	ts := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	sent := amqp.Publishing{
		Headers:     amqp.Table{"x-tether-user": "alice", "x-count": int32(7), "x-flag": true, "x-bytes": []byte("raw")},
		ContentType: "application/json", ContentEncoding: "identity", DeliveryMode: amqp.Persistent, Priority: 3,
		CorrelationId: "corr", ReplyTo: "replies", Expiration: "60000", MessageId: "mid-1", Timestamp: ts,
		Type: "visit", AppId: "ip-visit-counter", Body: []byte(`{"ip":"10.1.2.3"}`),
	}
	if err := ch.PublishWithContext(ctx, "", src, false, false, sent); err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, queue.Queue{Name: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	msgs := receiveN(t, r, 1)
	m := msgs[0]
	for k, want := range map[string]string{
		"x-tether-user": "alice", "x-count": "7", "x-flag": "true", "x-bytes": "raw",
		"property:content-type": "application/json", "property:message-id": "mid-1", "property:priority": "3",
		"property:correlation-id": "corr", "property:timestamp": "2026-12-03T10:00:00Z", "property:type": "visit",
		"property:app-id": "ip-visit-counter", "property:delivery-mode": "2", "property:reply-to": "replies",
	} {
		if got, ok := m.Header(k); !ok || got != want {
			t.Errorf("filter header %s = %q (%v), want %q", k, got, ok, want)
		}
	}
	f, err := queue.ParseFilter(map[string]string{"x-tether-user": "^alice$", "property:type": "^visit$"})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(&m) {
		t.Errorf("a filter on a header and a property does not match the message")
	}
	if err := b.Send(ctx, queue.Queue{Name: dst}, msgs); err != nil {
		t.Fatal(err)
	}
	if err := r.Ack(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ch.Get(dst, true)
	if err != nil || !ok {
		t.Fatalf("the copy is not on %s: %v %v", dst, ok, err)
	}
	copied := amqp.Publishing{
		Headers: got.Headers, ContentType: got.ContentType, ContentEncoding: got.ContentEncoding, DeliveryMode: got.DeliveryMode,
		Priority: got.Priority, CorrelationId: got.CorrelationId, ReplyTo: got.ReplyTo, Expiration: got.Expiration,
		MessageId: got.MessageId, Timestamp: got.Timestamp, Type: got.Type, AppId: got.AppId, Body: got.Body,
	}
	if copied.Timestamp.Equal(sent.Timestamp) {
		copied.Timestamp = sent.Timestamp // the same instant, in the local zone
	}
	if !reflect.DeepEqual(copied, sent) {
		t.Errorf("the copy differs:\n got %+v\nwant %+v", copied, sent)
	}
	r.Close()
	if lag, err := b.Lag(ctx, queue.Queue{Name: src}); err != nil || lag != 0 {
		t.Errorf("Lag(src) after the ack = %d %v, want 0", lag, err)
	}
}

// receiveN receives from r until it has n messages (30 s at most).
func receiveN(t *testing.T, r queue.Receiver, n int) []queue.Message {
	t.Helper()
	return queuetest.ReceiveN(t, r, n, 30*time.Second)
}

func TestUnacknowledgedComeBack(t *testing.T) {
	b := newBroker(t)
	ctx := ctxFor(t, 30*time.Second)
	ch := direct(t)
	src := declare(t, ch, "src")
	publish(t, ch, src, 10)
	r, err := b.Open(ctx, queue.Queue{Name: src})
	if err != nil {
		t.Fatal(err)
	}
	first := receiveN(t, r, 10)
	if err := r.Ack(ctx, first[:4]); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r2, err := b.Open(ctx, queue.Queue{Name: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	again := receiveN(t, r2, 6)
	for i, m := range again {
		if want := fmt.Sprintf("m%d", i+4); string(m.Value) != want || !strings.Contains(m.Position, "redelivered") {
			t.Errorf("redelivery %d = %s (%s), want %s, redelivered", i, m.Value, m.Position, want)
		}
	}
	if idle, err := b.Idle(ctx, queue.Queue{Name: src}); err != nil || idle {
		t.Errorf("Idle while a receiver consumes = %v %v, want false", idle, err)
	}
	if msgs, err := r2.Receive(ctx); err != nil || len(msgs) != 0 {
		t.Errorf("Receive on an emptied queue = %d messages %v, want none", len(msgs), err)
	}
	r2.Close()
	if idle, err := b.Idle(ctx, queue.Queue{Name: src}); err != nil || !idle {
		t.Errorf("Idle after the receiver closed = %v %v, want true", idle, err)
	}
	if lag, err := b.Lag(ctx, queue.Queue{Name: src}); err != nil || lag != 6 {
		t.Errorf("Lag = %d %v, want the 6 unacknowledged", lag, err)
	}
}

func TestSendMoreThanABatchInOrder(t *testing.T) {
	b := newBroker(t)
	ctx := ctxFor(t, 60*time.Second)
	ch := direct(t)
	dst := declare(t, ch, "dst")
	n := 2*maxBatch + 17
	msgs := make([]queue.Message, n)
	for i := range msgs {
		msgs[i] = queue.Message{Value: fmt.Appendf(nil, "m%d", i), Headers: []queue.Header{{Key: "x-i", Value: fmt.Append(nil, i)}, {Key: "property:message-id", Value: fmt.Append(nil, "id-", i)}}}
	}
	if err := b.Send(ctx, queue.Queue{Name: dst}, msgs); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d, ok, err := ch.Get(dst, true)
		if err != nil || !ok {
			t.Fatalf("message %d of %d is not there: %v %v", i, n, ok, err)
		}
		if string(d.Body) != fmt.Sprintf("m%d", i) || d.Headers["x-i"] != fmt.Sprint(i) || d.MessageId != fmt.Sprint("id-", i) || d.DeliveryMode != amqp.Persistent {
			t.Fatalf("message %d = %s %v id %q mode %d, want m%d in order, persistent, its header and message-id", i, d.Body, d.Headers, d.MessageId, d.DeliveryMode, i)
		}
	}
}
