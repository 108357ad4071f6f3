package sqs

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

func TestRoundTripKeepsAttributes(t *testing.T) {
	b := newBroker(t, 0)
	ctx := ctxFor(t, 30*time.Second)
	c := direct(t)
	src, srcURL := declare(t, c, "src", nil)
	dst, dstURL := declare(t, c, "dst", nil)
	attrs := map[string]types.MessageAttributeValue{
		"x-tether-user": {DataType: aws.String("String"), StringValue: aws.String("alice")},
		"count":         {DataType: aws.String("Number"), StringValue: aws.String("7")},
		"raw":           {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 0xff}},
	}
	body := `{"ip":"10.1.2.3"}`
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(srcURL), MessageBody: aws.String(body), MessageAttributes: attrs}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, queue.Queue{Name: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	msgs := receiveN(t, r, 1)
	m := msgs[0]
	if string(m.Value) != body || !strings.HasPrefix(m.Position, "message ") {
		t.Errorf("received %q at %q, want %q at message ID", m.Value, m.Position, body)
	}
	for k, want := range map[string]string{"x-tether-user": "alice", "count": "7", "raw": "\x00\x01\xff"} {
		if got, ok := m.Header(k); !ok || got != want {
			t.Errorf("filter header %s = %q (%v), want %q", k, got, ok, want)
		}
	}
	if keys := headerKeys(m); !reflect.DeepEqual(keys, []string{"count", "raw", "x-tether-user"}) {
		t.Errorf("headers %v, want the attributes by name", keys)
	}
	for spec, want := range map[string]bool{`^alice$`: true, `^bob$`: false} {
		f, err := queue.ParseFilter(map[string]string{"x-tether-user": spec, "count": `^[0-9]+$`})
		if err != nil {
			t.Fatal(err)
		}
		if f.Match(&m) != want {
			t.Errorf("filter %s matches %v, want %v", f, !want, want)
		}
	}
	if err := b.Send(ctx, queue.Queue{Name: dst}, msgs); err != nil {
		t.Fatal(err)
	}
	if err := r.Ack(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	got := takeAll(t, c, dstURL, 1)
	if len(got) != 1 {
		t.Fatalf("the copy: %d messages on %s, want 1", len(got), dst)
	}
	if aws.ToString(got[0].Body) != body {
		t.Errorf("the copy's body = %q, want %q", aws.ToString(got[0].Body), body)
	}
	if !reflect.DeepEqual(got[0].MessageAttributes, attrs) {
		t.Errorf("the copy's attributes differ:\n got %s\nwant %s", show(got[0].MessageAttributes), show(attrs))
	}
	if lag, err := b.Lag(ctx, queue.Queue{Name: src}); err != nil || lag != 0 {
		t.Errorf("Lag(src) after the ack = %d %v, want 0", lag, err)
	}
}

func headerKeys(m queue.Message) []string {
	var keys []string
	for _, h := range m.Headers {
		keys = append(keys, h.Key)
	}
	return keys
}

func show(attrs map[string]types.MessageAttributeValue) string {
	var parts []string
	for k, v := range attrs {
		parts = append(parts, fmt.Sprintf("%s=%s:%q/%v", k, aws.ToString(v.DataType), aws.ToString(v.StringValue), v.BinaryValue))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestUnacknowledgedComeBack(t *testing.T) {
	// goaws hides a received message for its queue's visibility
	// timeout, not the ReceiveMessage's: both are 3 s.
	b := newBroker(t, 3*time.Second)
	ctx := ctxFor(t, 30*time.Second)
	c := direct(t)
	name, u := declare(t, c, "src", map[string]string{"VisibilityTimeout": "3"})
	publish(t, c, u, 8)
	r, err := b.Open(ctx, queue.Queue{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	first := receiveN(t, r, 8)
	sort.Slice(first, func(i, j int) bool { return num(t, first[i]) < num(t, first[j]) })
	if err := r.Ack(ctx, first[:3]); err != nil {
		t.Fatal(err)
	}
	if msgs, err := r.Receive(ctx); err != nil || len(msgs) != 0 {
		t.Fatalf("Receive while the rest are hidden = %d messages %v, want none", len(msgs), err)
	}
	again := receiveN(t, r, 5)
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("the 5 not acknowledged came back after %v, before their visibility timeout", d)
	}
	t.Logf("the 5 not acknowledged came back after %v", time.Since(start).Round(time.Millisecond))
	seen := map[int]bool{}
	for _, m := range again {
		i := num(t, m)
		if i < 3 || seen[i] {
			t.Errorf("m%d came back: want each of m3..m7 once", i)
		}
		seen[i] = true
	}
	if err := r.Ack(ctx, again); err != nil {
		t.Fatal(err)
	}
	if lag, err := b.Lag(ctx, queue.Queue{Name: name}); err != nil || lag != 0 {
		t.Errorf("Lag after acknowledging all = %d %v, want 0", lag, err)
	}
	if err := r.Ack(ctx, []queue.Message{{Value: []byte("x"), Position: "elsewhere"}}); err == nil || !strings.Contains(err.Error(), "was not received") {
		t.Errorf("Ack of a message not received = %v, want an error", err)
	}
}

// num is n of a message "mN".
func num(t *testing.T, m queue.Message) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(string(m.Value), "m%d", &i); err != nil {
		t.Fatalf("message %q: %v", m.Value, err)
	}
	return i
}

func TestReceiveBatches(t *testing.T) {
	b := newBroker(t, 0)
	ctx := ctxFor(t, 30*time.Second)
	c := direct(t)
	// A queue whose receives wait 5 s unless they say otherwise.
	name, u := declare(t, c, "src", map[string]string{"ReceiveMessageWaitTimeSeconds": "5"})
	publish(t, c, u, 150)
	r, err := b.Open(ctx, queue.Queue{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	msgs, err := r.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one Receive of a queue of 150 returned %d messages", len(msgs))
	if len(msgs) <= maxEntries || len(msgs) > maxBatch {
		t.Errorf("one Receive of a queue of 150 returned %d messages, want more than %d and at most %d", len(msgs), maxEntries, maxBatch)
	}
	rest := receiveN(t, r, 150-len(msgs))
	all := append(msgs, rest...)
	seen := map[string]bool{}
	for _, m := range all {
		seen[string(m.Value)] = true
	}
	if len(seen) != 150 {
		t.Errorf("received %d distinct messages of 150", len(seen))
	}
	if err := r.Ack(ctx, all); err != nil {
		t.Fatal(err)
	}
	if lag, err := b.Lag(ctx, queue.Queue{Name: name}); err != nil || lag != 0 {
		t.Errorf("Lag after acknowledging all = %d %v, want 0", lag, err)
	}
	start := time.Now()
	if msgs, err := r.Receive(ctx); err != nil || len(msgs) != 0 {
		t.Errorf("Receive of the emptied queue = %d messages %v, want none", len(msgs), err)
	}
	if d := time.Since(start); d > pollTime+time.Second {
		t.Errorf("Receive of an empty queue took %v, want about %v (not the queue's 5 s)", d, pollTime)
	}
	// A batch that empties the queue waits for the fillers' last,
	// empty receive: pollTime.
	publish(t, c, u, 25)
	start = time.Now()
	msgs, err = r.Receive(ctx)
	if err != nil || len(msgs) != 25 {
		t.Errorf("Receive of 25 = %d messages %v, want 25", len(msgs), err)
	}
	if d := time.Since(start); d > pollTime+time.Second {
		t.Errorf("Receive of 25 took %v, want at most about %v", d, pollTime)
	}
	if err := r.Ack(ctx, msgs); err != nil {
		t.Fatal(err)
	}
}
