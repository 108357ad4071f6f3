package rabbitmq

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
)

// drainDirect takes every message of queue name (waiting up to 10 s for
// want of them) and returns their bodies in order.
func drainDirect(t *testing.T, ch *amqp.Channel, name string, want int) []string {
	t.Helper()
	var bodies []string
	deadline := time.Now().Add(10 * time.Second)
	for len(bodies) < want || time.Now().Before(deadline.Add(-9*time.Second)) {
		d, ok, err := ch.Get(name, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		bodies = append(bodies, string(d.Body))
	}
	return bodies
}

// TestForwarderOverRabbitMQ: the forwarder splits a real queue by header
// and property, in order per destination, and a broken connection in the
// middle (its channels gone, deliveries unacknowledged) loses nothing.
func TestForwarderOverRabbitMQ(t *testing.T) {
	b := newBroker(t)
	ch := direct(t)
	src, alice, bob, fallback := declare(t, ch, "src"), declare(t, ch, "alice"), declare(t, ch, "bob"), declare(t, ch, "fallback")
	fa, _ := queue.ParseFilter(map[string]string{"x-tether-user": "^alice$"})
	fb, _ := queue.ParseFilter(map[string]string{"property:message-id": "^id-(1|3)$"})
	f := &queue.Forwarder{Broker: b, Source: queue.Queue{Name: src}, Fallback: queue.Queue{Name: fallback}}
	f.SetRoutes([]queue.Route{
		{Session: "alice", Filter: fa, Dest: queue.Queue{Name: alice}},
		{Session: "bob", Filter: fb, Dest: queue.Queue{Name: bob}},
	})
	const n = 3000
	// users cycle alice, "", "", "": message i is alice's when i%4 == 0;
	// ids id-1 and id-3 are bob's (id-1 and id-3 are not alice's).
	publish(t, ch, src, n, "alice", "", "", "")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.Run(ctx) }()
	// Break the connection once some have gone.
	for f.Stats().Fallback < 200 {
		select {
		case err := <-done:
			t.Fatalf("Run ended before the connection broke: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.mu.Lock()
	_ = b.conn.Close()
	b.mu.Unlock()
	if err := <-done; err == nil {
		t.Fatal("Run returned nil after its connection broke, want the error")
	} else {
		t.Logf("Run after the connection broke: %v", err)
	}
	// Run again, as the operator does: it resumes on a new connection.
	go func() { done <- f.Run(ctx) }()
	for {
		lag, err := b.Lag(ctx, queue.Queue{Name: src})
		if err == nil && lag == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the source still has %d messages: %v", lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d messages forwarded in %v, a broken connection included", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(pollTime) // the last batch's acknowledgements
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	check := func(name string, want func(i int) bool) {
		t.Helper()
		var wantN int
		for i := range n {
			if want(i) {
				wantN++
			}
		}
		got := drainDirect(t, ch, name, wantN)
		seen := map[string]int{}
		last := -1
		for _, body := range got {
			var i int
			if _, err := fmt.Sscanf(body, "m%d", &i); err != nil || !want(i) {
				t.Fatalf("%s got %q, which is not its", name, body)
			}
			seen[body]++
			if seen[body] == 1 {
				if i < last {
					t.Errorf("%s: m%d after m%d: out of order", name, i, last)
				}
				last = i
			}
		}
		if len(seen) != wantN {
			t.Errorf("%s got %d distinct messages, want %d (lost %d)", name, len(seen), wantN, wantN-len(seen))
		}
		t.Logf("%s: %d messages, %d distinct (the rest copied again after the broken connection)", name, len(got), len(seen))
	}
	check(alice, func(i int) bool { return i%4 == 0 })
	check(bob, func(i int) bool { return i%4 != 0 && (i == 1 || i == 3) })
	check(fallback, func(i int) bool { return i%4 != 0 && i != 1 && i != 3 })
}

// TestDrainOverRabbitMQ: Drain moves a session's queue back in order and
// stops when it is empty.
func TestDrainOverRabbitMQ(t *testing.T) {
	b := newBroker(t)
	ch := direct(t)
	from, to := declare(t, ch, "from"), declare(t, ch, "to")
	publish(t, ch, from, 1200)
	moved, err := queue.Drain(ctxFor(t, 60*time.Second), b, queue.Queue{Name: from}, queue.Queue{Name: to})
	if err != nil || moved != 1200 {
		t.Fatalf("Drain = %d, %v; want 1200 moved", moved, err)
	}
	got := drainDirect(t, ch, to, 1200)
	if len(got) != 1200 {
		t.Fatalf("the destination has %d, want 1200", len(got))
	}
	for i, body := range got {
		if body != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %s: out of order", i, body)
		}
	}
	if moved, err := queue.Drain(ctxFor(t, 10*time.Second), b, queue.Queue{Name: "no-such-" + from}, queue.Queue{Name: to}); err != nil || moved != 0 {
		t.Fatalf("Drain of a deleted queue = %d %v, want 0, nil", moved, err)
	}
}
