package queue

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Fake is an in-memory Broker with a log per queue and an acknowledged
// position per consumer (queue and group), as Kafka keeps them, for the
// tests of what is built on Broker.
type Fake struct {
	// Batch bounds how many messages one Receive returns (default 10).
	Batch int
	// FailSend, if set, is asked before every Send; its error fails it.
	FailSend func(q Queue, msgs []Message) error

	mu     sync.Mutex
	logs   map[string][]Message
	acked  map[Queue]int
	busy   map[Queue]bool
	notify chan struct{}
}

var _ Broker = (*Fake)(nil)

func (f *Fake) init() {
	if f.logs == nil {
		f.logs, f.acked, f.busy = map[string][]Message{}, map[Queue]int{}, map[Queue]bool{}
		f.notify = make(chan struct{})
	}
}

// Messages returns what queue name holds.
func (f *Fake) Messages(name string) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return append([]Message(nil), f.logs[name]...)
}

// SetBusy says whether a consumer reads q (Idle says the opposite).
func (f *Fake) SetBusy(q Queue, busy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.busy[q] = busy
}

// Exists says whether queue name exists.
func (f *Fake) Exists(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	_, ok := f.logs[name]
	return ok
}

func (f *Fake) Check(_ context.Context, q Queue) error {
	if !f.Exists(q.Name) {
		return &Error{Kind: "fake", Broker: "memory", Op: "checking " + q.Name, Err: fmt.Errorf("queue %s: %w", q.Name, ErrNotFound)}
	}
	return nil
}

func (f *Fake) Create(_ context.Context, q, _ Queue) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	if _, ok := f.logs[q.Name]; !ok {
		f.logs[q.Name] = []Message{}
	}
	return nil
}

func (f *Fake) Delete(_ context.Context, q Queue) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	delete(f.logs, q.Name)
	for k := range f.acked {
		if k.Name == q.Name {
			delete(f.acked, k)
		}
	}
	return nil
}

func (f *Fake) Idle(_ context.Context, q Queue) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return !f.busy[q], nil
}

func (f *Fake) Lag(_ context.Context, q Queue) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return int64(len(f.logs[q.Name]) - f.acked[q]), nil
}

func (f *Fake) Open(_ context.Context, q Queue) (Receiver, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	if _, ok := f.logs[q.Name]; !ok {
		return nil, fmt.Errorf("queue %s: %w", q.Name, ErrNotFound)
	}
	return &fakeReceiver{f: f, q: q, next: f.acked[q]}, nil
}

// Send appends msgs to q's log (creating it: a producer to a missing
// Kafka topic may, too).
func (f *Fake) Send(_ context.Context, q Queue, msgs []Message) error {
	if f.FailSend != nil {
		if err := f.FailSend(q, msgs); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	for _, m := range msgs {
		m.Ack = nil
		f.logs[q.Name] = append(f.logs[q.Name], m)
	}
	close(f.notify)
	f.notify = make(chan struct{})
	return nil
}

func (f *Fake) Close() error { return nil }

type fakeReceiver struct {
	f    *Fake
	q    Queue
	next int
}

func (r *fakeReceiver) Receive(ctx context.Context) ([]Message, error) {
	r.f.mu.Lock()
	log, notify := r.f.logs[r.q.Name], r.f.notify
	batch := r.f.Batch
	r.f.mu.Unlock()
	if batch <= 0 {
		batch = 10
	}
	if r.next >= len(log) {
		select {
		case <-notify:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, nil
	}
	end := min(len(log), r.next+batch)
	out := make([]Message, 0, end-r.next)
	for i := r.next; i < end; i++ {
		m := log[i]
		m.Ack, m.Position = i, "offset "+strconv.Itoa(i)
		out = append(out, m)
	}
	r.next = end
	return out, nil
}

func (r *fakeReceiver) Ack(_ context.Context, msgs []Message) error {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	for _, m := range msgs {
		if i, ok := m.Ack.(int); ok && i+1 > r.f.acked[r.q] {
			r.f.acked[r.q] = i + 1
		}
	}
	return nil
}

func (r *fakeReceiver) Close() {}
