package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/queue"
)

// cluster starts a one-broker kfake cluster on loopback with topics of
// partitions partitions each.
func cluster(t *testing.T, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// newBroker returns a Broker for c, closed at the end of t.
func newBroker(t *testing.T, c *kfake.Cluster) *Broker {
	t.Helper()
	b, err := New(Config{Brokers: c.ListenAddrs(), ClientID: "tether-test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// admin returns a kadm client of its own for c, to look at the cluster
// apart from the Broker under test.
func admin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// open opens q, closed at the end of t.
func open(t *testing.T, b *Broker, q queue.Queue) queue.Receiver {
	t.Helper()
	r, err := b.Open(ctxFor(t, 10*time.Second), q)
	if err != nil {
		t.Fatalf("Open(%s): %v", q, err)
	}
	t.Cleanup(r.Close)
	return r
}

// receiveAll receives until r has returned n messages and then one
// Receive returned none (so that more than n shows), or fails t after 15s.
func receiveAll(t *testing.T, r queue.Receiver, n int) []queue.Message {
	t.Helper()
	ctx := ctxFor(t, 15*time.Second)
	var got []queue.Message
	for {
		msgs, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive after %d of %d messages: %v", len(got), n, err)
		}
		got = append(got, msgs...)
		if len(msgs) == 0 && len(got) >= n {
			break
		}
	}
	if len(got) != n {
		t.Fatalf("received %d messages, want %d: %v", len(got), n, values(got))
	}
	return got
}

func values(msgs []queue.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Value)
	}
	return out
}

// byPartition returns the values of msgs by partition, in order.
func byPartition(msgs []queue.Message) map[int32][]string {
	out := map[int32][]string{}
	for _, m := range msgs {
		out[m.Partition] = append(out[m.Partition], string(m.Value))
	}
	return out
}

// numbered returns n messages "v0".."vn-1", message i in partition i mod
// partitions, key "k<partition>".
func numbered(n int, partitions int32) []queue.Message {
	msgs := make([]queue.Message, n)
	for i := range msgs {
		p := int32(i) % partitions
		msgs[i] = queue.Message{Key: fmt.Appendf(nil, "k%d", p), Value: fmt.Appendf(nil, "v%d", i), Partition: p}
	}
	return msgs
}

func send(t *testing.T, b *Broker, q queue.Queue, msgs []queue.Message) {
	t.Helper()
	if err := b.Send(ctxFor(t, 10*time.Second), q, msgs); err != nil {
		t.Fatalf("Send to %s: %v", q, err)
	}
}

func lag(t *testing.T, b *Broker, q queue.Queue) int64 {
	t.Helper()
	n, err := b.Lag(ctxFor(t, 10*time.Second), q)
	if err != nil {
		t.Fatalf("Lag(%s): %v", q, err)
	}
	return n
}

// eventually fails t unless cond is true within 15s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
