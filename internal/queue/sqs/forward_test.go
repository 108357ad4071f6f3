package sqs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

// TestForwarderOverGoAWS: the forwarder splits a queue by message
// attribute, losing nothing and keeping the attributes; a Drain moves a
// session's queue to the fallback. SQS standard queues keep no order,
// so none is checked; goaws's FIFO queues cannot show one either (see
// the package's report: they skip and hide messages of a group).
func TestForwarderOverGoAWS(t *testing.T) {
	// What a receive SQS answered but the answer was lost (a busy
	// machine: the SDK's retry) comes back after 5 s, within the test's
	// deadlines: at least once, so counts below are lower bounds.
	b := newBroker(t, 5*time.Second)
	c := direct(t)
	src, srcURL := declare(t, c, "src", nil)
	alice, _ := declare(t, c, "alice", nil)
	bob, bobURL := declare(t, c, "bob", nil)
	fallback, fallbackURL := declare(t, c, "fallback", nil)
	fa, _ := queue.ParseFilter(map[string]string{"user": "^alice$"})
	fb, _ := queue.ParseFilter(map[string]string{"i": "^(1|3|5)$"})
	f := &queue.Forwarder{Broker: b, Source: queue.Queue{Name: src}, Fallback: queue.Queue{Name: fallback}}
	f.SetRoutes([]queue.Route{
		{Session: "alice", Filter: fa, Dest: queue.Queue{Name: alice}},
		{Session: "bob", Filter: fb, Dest: queue.Queue{Name: bob}},
	})
	const n = 300
	// users cycle alice, "", "", "": message i is alice's when i%4 == 0;
	// 1, 3 and 5 are bob's.
	isAlice := func(i int) bool { return i%4 == 0 }
	isBob := func(i int) bool { return !isAlice(i) && (i == 1 || i == 3 || i == 5) }
	publish(t, c, srcURL, n, "alice", "", "", "")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f.Run(ctx) }()
	forwarded := func() int64 {
		st := f.Stats()
		return st.Delivered["alice"] + st.Delivered["bob"] + st.Fallback
	}
	for {
		// Every message acknowledged by the forwarder (goaws's counts
		// alone can say 0 while a batch is still in flight).
		lag, err := b.Lag(ctx, queue.Queue{Name: src})
		if err == nil && lag == 0 && forwarded() >= n {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended with %d messages left: %v", lag, err)
		case <-ctx.Done():
			t.Fatalf("the source still has %d messages: %v", lag, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Logf("%d messages forwarded in %v", n, time.Since(start).Round(time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := f.Stats()
	wantAlice, wantBob := count(n, isAlice), count(n, isBob)
	if st.Delivered["alice"] < int64(wantAlice) || st.Delivered["bob"] < int64(wantBob) || st.Fallback < int64(n-wantAlice-wantBob) {
		t.Errorf("stats %+v, want at least alice %d, bob %d, fallback %d", st, wantAlice, wantBob, n-wantAlice-wantBob)
	}
	check(t, bob, takeAll(t, c, bobURL, wantBob), isBob)
	// The session of alice ends: its queue goes to the fallback.
	moved, err := queue.Drain(ctxFor(t, 30*time.Second), b, queue.Queue{Name: alice}, queue.Queue{Name: fallback})
	if err != nil || moved < wantAlice {
		t.Fatalf("Drain = %d, %v; want %d moved (or more, copies of the same)", moved, err, wantAlice)
	}
	if lag, err := b.Lag(t.Context(), queue.Queue{Name: alice}); err != nil || lag != 0 {
		t.Errorf("Lag(alice) after the Drain = %d %v, want 0", lag, err)
	}
	check(t, fallback, takeAll(t, c, fallbackURL, n-wantBob), func(i int) bool { return !isBob(i) })
	if moved, err := queue.Drain(ctxFor(t, 10*time.Second), b, queue.Queue{Name: "no-such-" + alice}, queue.Queue{Name: fallback}); err != nil || moved != 0 {
		t.Fatalf("Drain of a deleted queue = %d %v, want 0, nil", moved, err)
	}
}

func count(n int, want func(int) bool) int {
	k := 0
	for i := range n {
		if want(i) {
			k++
		}
	}
	return k
}

// check fails t unless msgs, taken from queue name, are once each the
// messages "mI" of the n published that want says, with their
// attributes.
func check(t *testing.T, name string, msgs []types.Message, want func(i int) bool) {
	t.Helper()
	seen := map[int]int{}
	for _, m := range msgs {
		var i int
		if _, err := fmt.Sscanf(aws.ToString(m.Body), "m%d", &i); err != nil || !want(i) {
			t.Fatalf("%s got %q, which is not its", name, aws.ToString(m.Body))
		}
		seen[i]++
		if got := aws.ToString(m.MessageAttributes["i"].StringValue); got != fmt.Sprint(i) || aws.ToString(m.MessageAttributes["i"].DataType) != "Number" {
			t.Errorf("%s: m%d has attribute i %q, want Number %d", name, i, got, i)
		}
		if _, ok := m.MessageAttributes["user"]; ok != (i%4 == 0) {
			t.Errorf("%s: m%d has attributes %v: the user attribute is %v, want %v", name, i, m.MessageAttributes, ok, i%4 == 0)
		}
	}
	wantN := count(300, want)
	dups := len(msgs) - len(seen)
	if len(seen) != wantN {
		t.Errorf("%s got %d distinct messages, want %d (lost %d)", name, len(seen), wantN, wantN-len(seen))
	}
	t.Logf("%s: %d messages, %d distinct, %d copied twice", name, len(msgs), len(seen), dups)
}
