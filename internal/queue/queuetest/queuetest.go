// Package queuetest holds what the brokers' tests share: receiving a
// given number of messages with a deadline.
package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/queue"
)

// ReceiveN receives from r until it has n messages, failing t after
// timeout or on an error.
func ReceiveN(t testing.TB, r queue.Receiver, n int, timeout time.Duration) []queue.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []queue.Message
	for len(got) < n {
		msgs, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive after %d of %d: %v", len(got), n, err)
		}
		got = append(got, msgs...)
	}
	if len(got) != n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	return got
}
