package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tether-dev/tether/internal/queue"
)

// Messages sent come back with their keys, values, headers and
// partitions, and each partition (so each key) in the order sent.
func TestSendReceive(t *testing.T) {
	c := cluster(t, 3, "orders")
	b := newBroker(t, c)
	q := queue.Queue{Name: "orders", Group: "app"}

	var sent []queue.Message
	for i := range 30 {
		k := i % 6 // keys k0..k5, two per partition
		sent = append(sent, queue.Message{
			Key:       fmt.Appendf(nil, "k%d", k),
			Value:     fmt.Appendf(nil, "k%d-%d", k, i),
			Partition: int32(k % 3),
			Headers:   []queue.Header{{Key: "session", Value: []byte("s1")}, {Key: "seq", Value: fmt.Appendf(nil, "%d", i)}},
		})
	}
	sent = append(sent, queue.Message{Key: nil, Value: []byte("no key"), Partition: 4}) // 4 mod 3 = 1
	send(t, b, q, sent[:10])
	send(t, b, q, sent[10:])

	got := receiveAll(t, open(t, b, q), len(sent))

	want := map[string]queue.Message{}
	for _, m := range sent {
		want[string(m.Value)] = m
	}
	for _, m := range got {
		w, ok := want[string(m.Value)]
		if !ok {
			t.Fatalf("received %q, never sent", m.Value)
		}
		if !bytes.Equal(m.Key, w.Key) {
			t.Errorf("%q: key %q, want %q", m.Value, m.Key, w.Key)
		}
		if wp := w.Partition % 3; m.Partition != wp {
			t.Errorf("%q: partition %d, want %d", m.Value, m.Partition, wp)
		}
		if !slices.EqualFunc(m.Headers, w.Headers, func(a, b queue.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Errorf("%q: headers %v, want %v", m.Value, m.Headers, w.Headers)
		}
		if _, ok := m.Ack.(position); !ok || m.Position == "" {
			t.Errorf("%q: Ack %T, Position %q", m.Value, m.Ack, m.Position)
		}
	}
	for p, vs := range byPartition(got) {
		var wantOrder []string
		for _, m := range sent {
			if m.Partition%3 == p {
				wantOrder = append(wantOrder, string(m.Value))
			}
		}
		if !slices.Equal(vs, wantOrder) {
			t.Errorf("partition %d in order %v, want %v", p, vs, wantOrder)
		}
	}
	if p0 := got[slices.IndexFunc(got, func(m queue.Message) bool { return m.Partition == 0 })]; p0.Position != "partition 0 offset 0" {
		t.Errorf("first of partition 0 at %q, want %q", p0.Position, "partition 0 offset 0")
	}
}

// Send puts a message in partition Partition mod the topic's partition
// count.
func TestSendPartitionMod(t *testing.T) {
	c := cluster(t, 1, "one")
	adm := admin(t, c)
	if _, err := adm.CreateTopic(ctxFor(t, 5*time.Second), 3, 1, nil, "three"); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, c)
	for _, tc := range []struct {
		topic string
		from  int32
		want  int32
	}{
		{"one", 0, 0}, {"one", 2, 0},
		{"three", 0, 0}, {"three", 2, 2}, {"three", 3, 0}, {"three", 7, 1}, {"three", -1, 2},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.topic, tc.from), func(t *testing.T) {
			g := fmt.Sprintf("g-%s-%d", tc.topic, tc.from)
			q := queue.Queue{Name: tc.topic, Group: g}
			// Earlier cases' messages are there too: find ours.
			v := []byte(g)
			send(t, b, q, []queue.Message{{Value: v, Partition: tc.from}})
			r := open(t, b, q)
			ctx := ctxFor(t, 10*time.Second)
			for {
				msgs, err := r.Receive(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if i := slices.IndexFunc(msgs, func(m queue.Message) bool { return bytes.Equal(m.Value, v) }); i >= 0 {
					if msgs[i].Partition != tc.want {
						t.Errorf("partition %d, want %d", msgs[i].Partition, tc.want)
					}
					return
				}
			}
		})
	}
}

// What is acknowledged is not received again by the next Open; what is
// not is (at least once).
func TestAckResumes(t *testing.T) {
	c := cluster(t, 3, "orders")
	b := newBroker(t, c)
	q := queue.Queue{Name: "orders", Group: "app"}
	send(t, b, q, numbered(12, 3)) // v0 v3 v6 v9 in partition 0, v1 v4 v7 v10 in 1, ...

	r := open(t, b, q)
	got := receiveAll(t, r, 12)
	parts := byPartition(got)
	// Ack all of partition 0 and the first two of partition 1 (Ack
	// commits after the highest offset per partition, so pass them out
	// of order); none of partition 2.
	var ack []queue.Message
	for _, m := range got {
		v := string(m.Value)
		if m.Partition == 0 || v == parts[1][1] || v == parts[1][0] {
			ack = append([]queue.Message{m}, ack...)
		}
	}
	if err := r.Ack(ctxFor(t, 10*time.Second), ack); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	r.Close()

	again := receiveAll(t, open(t, b, q), 6)
	want := append(slices.Clone(parts[1][2:]), parts[2]...)
	slices.Sort(want)
	gotv := values(again)
	slices.Sort(gotv)
	if !slices.Equal(gotv, want) {
		t.Errorf("after Ack, received %v, want %v", gotv, want)
	}
}

// Lag counts from the group's commits, or from the start of the log
// where it has none.
func TestLag(t *testing.T) {
	c := cluster(t, 2, "orders")
	b := newBroker(t, c)
	q := queue.Queue{Name: "orders", Group: "app"}
	if n := lag(t, b, q); n != 0 {
		t.Errorf("Lag of an empty topic = %d", n)
	}
	send(t, b, q, numbered(10, 2))
	if n := lag(t, b, q); n != 10 {
		t.Errorf("Lag without commits = %d, want 10", n)
	}
	if n := lag(t, b, queue.Queue{Name: "orders"}); n != 10 {
		t.Errorf("Lag without a group = %d, want 10", n)
	}

	r := open(t, b, q)
	got := receiveAll(t, r, 10)
	p0 := slices.DeleteFunc(slices.Clone(got), func(m queue.Message) bool { return m.Partition != 0 })
	if err := r.Ack(ctxFor(t, 10*time.Second), p0[:2]); err != nil {
		t.Fatal(err)
	}
	if n := lag(t, b, q); n != 8 {
		t.Errorf("Lag after acking 2 = %d, want 8", n)
	}
	if err := r.Ack(ctxFor(t, 10*time.Second), got); err != nil {
		t.Fatal(err)
	}
	if n := lag(t, b, q); n != 0 {
		t.Errorf("Lag after acking all = %d, want 0", n)
	}

	// Without a commit, lag counts from the start of the log, not offset
	// 0: delete partition 1's first 3 records.
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 3})
	if rs, err := admin(t, c).DeleteRecords(ctxFor(t, 5*time.Second), del); err != nil || rs.Error() != nil {
		t.Fatalf("DeleteRecords: %v %v", err, rs.Error())
	}
	if n := lag(t, b, queue.Queue{Name: "orders", Group: "new"}); n != 7 {
		t.Errorf("Lag without commits after deleting 3 records = %d, want 7", n)
	}

	_, err := b.Lag(ctxFor(t, 5*time.Second), queue.Queue{Name: "nope", Group: "app"})
	if !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Lag of a missing topic: %v, want ErrNotFound", err)
	}
}

// Open of a missing topic says so (Drain relies on it).
func TestOpenMissing(t *testing.T) {
	b := newBroker(t, cluster(t, 1, "orders"))
	_, err := b.Open(ctxFor(t, 5*time.Second), queue.Queue{Name: "nope", Group: "app"})
	if !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Open of a missing topic: %v, want ErrNotFound", err)
	}
	if _, err := b.Open(ctxFor(t, 5*time.Second), queue.Queue{Name: "orders"}); err == nil {
		t.Error("Open without a group: no error")
	}
}

// After a fetch fails, Receive returns that error, and again on the next
// call, rather than going on past the messages it dropped.
func TestReceiveFetchError(t *testing.T) {
	c := cluster(t, 1, "orders")
	b := newBroker(t, c)
	q := queue.Queue{Name: "orders", Group: "app"}
	send(t, b, q, numbered(3, 1))
	var failing atomic.Bool
	failing.Store(true)
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		freq := req.(*kmsg.FetchRequest)
		resp := freq.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range freq.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	r := open(t, b, q)
	ctx := ctxFor(t, 10*time.Second)
	var err error
	for err == nil && ctx.Err() == nil {
		var msgs []queue.Message
		msgs, err = r.Receive(ctx)
		if len(msgs) > 0 {
			t.Fatalf("received %v from a failing fetch", values(msgs))
		}
	}
	var qe *queue.Error
	if !errors.As(err, &qe) || !errors.Is(err, kerr.TopicAuthorizationFailed) || qe.Hint == "" {
		t.Fatalf("Receive: %v, want a *queue.Error with a hint wrapping TOPIC_AUTHORIZATION_FAILED", err)
	}
	// The fetches work again, but this receiver dropped what came with
	// the error: it must not go on.
	failing.Store(false)
	for range 3 {
		if msgs, err2 := r.Receive(ctx); !errors.Is(err2, kerr.TopicAuthorizationFailed) {
			t.Fatalf("Receive after the error: %v %v, want the error again", values(msgs), err2)
		}
	}
	// A new Open reads them.
	r.Close()
	receiveAll(t, open(t, b, q), 3)
}

// Closing the Broker closes its receivers.
func TestCloseClosesReceivers(t *testing.T) {
	b := newBroker(t, cluster(t, 1, "orders"))
	r := open(t, b, queue.Queue{Name: "orders", Group: "app"})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Receive(ctxFor(t, 5*time.Second)); err == nil {
		t.Error("Receive after Close: no error")
	}
	if _, err := b.Open(ctxFor(t, 5*time.Second), queue.Queue{Name: "orders", Group: "app"}); err == nil {
		t.Error("Open after Close: no error")
	}
}
