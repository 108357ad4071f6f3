package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func user(u string, id int) Message {
	m := Message{Value: []byte(fmt.Sprint(id)), Partition: int32(id % 3)}
	if u != "" {
		m.Headers = []Header{{Key: "x-tether-user", Value: []byte(u)}}
	}
	return m
}

func mustFilter(t *testing.T, re string) Filter {
	t.Helper()
	f, err := ParseFilter(map[string]string{"x-tether-user": re})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var (
	src      = Queue{Name: "visits", Group: "consumer"}
	fallback = Queue{Name: "visits-fallback", Group: "consumer-fallback"}
	qA       = Queue{Name: "visits-a", Group: "consumer-a"}
	qB       = Queue{Name: "visits-b", Group: "consumer-b"}
)

func newFake(t *testing.T) *Fake {
	f := &Fake{Batch: 7}
	for _, q := range []Queue{src, fallback, qA, qB} {
		if err := f.Create(context.Background(), q, src); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// runUntil runs fw until the source has no lag, then stops it.
func runUntil(t *testing.T, fw *Forwarder) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			cancel()
			return err
		default:
		}
		if lag, _ := fw.Broker.Lag(ctx, fw.Source); lag == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	return <-done
}

func values(ms []Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Value))
	}
	return out
}

func TestForwarderRoutes(t *testing.T) {
	b := newFake(t)
	var in []Message
	want := map[string][]string{}
	for i := range 60 {
		u := []string{"a", "b", "", "c", "ab"}[i%5]
		in = append(in, user(u, i))
		dest := map[string]string{"a": qA.Name, "ab": qA.Name, "b": qB.Name}[u]
		if dest == "" {
			dest = fallback.Name
		}
		want[dest] = append(want[dest], fmt.Sprint(i))
	}
	if err := b.Send(context.Background(), src, in); err != nil {
		t.Fatal(err)
	}
	var told atomic.Int64
	fw := &Forwarder{Broker: b, Source: src, Fallback: fallback, Overlap: func(winner string, others []string, m *Message) {
		if winner != "A" || !slices.Equal(others, []string{"B"}) {
			t.Errorf("overlap told %s over %v", winner, others)
		}
		told.Add(1)
	}}
	// A started first: "ab" matches both filters and goes to A.
	fw.SetRoutes([]Route{{Session: "A", Filter: mustFilter(t, "^ab?$"), Dest: qA}, {Session: "B", Filter: mustFilter(t, "b"), Dest: qB}})
	if err := runUntil(t, fw); err != nil {
		t.Fatal(err)
	}
	for _, q := range []Queue{qA, qB, fallback} {
		if got := values(b.Messages(q.Name)); !slices.Equal(got, want[q.Name]) {
			t.Errorf("%s got %v, want %v", q.Name, got, want[q.Name])
		}
	}
	st := fw.Stats()
	if st.Delivered["A"] != 24 || st.Delivered["B"] != 12 || st.Fallback != 24 || st.Overlaps["B"] != 12 || st.Won["A"] != 12 || told.Load() != 12 {
		t.Errorf("stats %+v, overlaps told %d", st, told.Load())
	}
	if lag, _ := b.Lag(context.Background(), src); lag != 0 {
		t.Errorf("source lag %d after forwarding", lag)
	}
}

// TestForwarderCrash: a copy that fails is not acknowledged: the next run
// sends it again, and nothing is lost.
func TestForwarderCrash(t *testing.T) {
	b := newFake(t)
	var in []Message
	for i := range 30 {
		in = append(in, user([]string{"a", ""}[i%2], i))
	}
	b.Send(context.Background(), src, in)
	var sends atomic.Int64
	b.FailSend = func(q Queue, _ []Message) error {
		if sends.Add(1) == 3 {
			return errors.New("broker down")
		}
		return nil
	}
	fw := &Forwarder{Broker: b, Source: src, Fallback: fallback}
	fw.SetRoutes([]Route{{Session: "A", Filter: mustFilter(t, "^a$"), Dest: qA}})
	if err := runUntil(t, fw); err == nil {
		t.Fatal("the failed send did not end the run")
	}
	if err := runUntil(t, fw); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, q := range []Queue{qA, fallback} {
		for _, v := range values(b.Messages(q.Name)) {
			got[v]++
		}
	}
	for i := range 30 {
		if got[fmt.Sprint(i)] == 0 {
			t.Errorf("message %d lost", i)
		}
	}
}

// TestForwarderOrder: within each destination, each partition's messages
// keep their order.
func TestForwarderOrder(t *testing.T) {
	b := newFake(t)
	var in []Message
	for i := range 90 {
		in = append(in, user([]string{"a", ""}[i%2], i))
	}
	b.Send(context.Background(), src, in)
	fw := &Forwarder{Broker: b, Source: src, Fallback: fallback}
	fw.SetRoutes([]Route{{Session: "A", Filter: mustFilter(t, "^a$"), Dest: qA}})
	if err := runUntil(t, fw); err != nil {
		t.Fatal(err)
	}
	for _, q := range []Queue{qA, fallback} {
		last := map[int32]int{}
		for _, m := range b.Messages(q.Name) {
			var v int
			fmt.Sscan(string(m.Value), &v)
			if p, ok := last[m.Partition]; ok && v < p {
				t.Errorf("%s partition %d: %d after %d", q.Name, m.Partition, v, p)
			}
			last[m.Partition] = v
		}
	}
}

// TestSessionEnds: a session's route taken out gets nothing more, and what
// it did not consume drains to the fallback: each message on exactly one
// side.
func TestSessionEnds(t *testing.T) {
	ctx := context.Background()
	b := newFake(t)
	fw := &Forwarder{Broker: b, Source: src, Fallback: fallback}
	fw.SetRoutes([]Route{{Session: "A", Filter: mustFilter(t, "^a$"), Dest: qA}})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fw.Run(rctx) }()
	// The session's program consumes (acknowledges) its first 5.
	sent := 0
	send := func(n int) {
		var in []Message
		for range n {
			in = append(in, user([]string{"a", "z"}[sent%2], sent))
			sent++
		}
		b.Send(ctx, src, in)
	}
	send(40)
	waitFor(t, func() bool { l, _ := b.Lag(ctx, src); return l == 0 })
	r, _ := b.Open(ctx, qA)
	got, _ := r.Receive(ctx)
	consumed := got[:5]
	r.Ack(ctx, consumed)
	send(20) // keeps coming while the session ends
	fw.SetRoutes(nil)
	moved, err := Drain(ctx, b, qA, fallback)
	if err != nil {
		t.Fatal(err)
	}
	send(20)
	waitFor(t, func() bool { l, _ := b.Lag(ctx, src); return l == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if moved == 0 {
		t.Error("nothing drained")
	}
	seen := map[string]int{}
	for _, v := range values(consumed) {
		seen[v]++
	}
	for _, v := range values(b.Messages(fallback.Name)) {
		seen[v]++
	}
	for i := range sent {
		if n := seen[fmt.Sprint(i)]; n != 1 {
			t.Errorf("message %d delivered %d times (session consumed %v)", i, n, values(consumed))
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
