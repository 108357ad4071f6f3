package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
)

// Route sends the messages Filter matches to Dest, for one session.
type Route struct {
	Session string
	Filter  Filter
	Dest    Queue
}

// Forwarder moves the messages of a workload's queue (Source) to the
// sessions splitting it: each message to the first Route (the earliest
// session) whose filter it matches, else to Fallback, the queue the
// deployed workload reads meanwhile. It acknowledges a batch only after
// every copy of it is durable, so a crash re-sends (at least once) and
// loses nothing.
type Forwarder struct {
	Broker   Broker
	Source   Queue
	Fallback Queue
	Log      *slog.Logger
	// Overlap, if set, is told of a message that matched the filters of
	// more sessions than the one (the earliest) that got it.
	Overlap func(winner string, others []string, m *Message)

	mu     sync.Mutex
	routes []Route
	stats  Stats
	batch  sync.Mutex // held from routing a batch to acknowledging it
}

// Stats count what a forwarder moved.
type Stats struct {
	// Delivered counts the messages each session got.
	Delivered map[string]int64
	// Overlaps counts, per session, the messages its filter matched that
	// an earlier session got.
	Overlaps map[string]int64
	// Won counts, per session, the messages it got that a later
	// session's filter matched too.
	Won map[string]int64
	// Fallback counts the messages the deployed workload got.
	Fallback int64
}

// SetRoutes replaces the routes (earliest session first). When it
// returns, no batch routed with the old ones is still in flight: a route
// taken out gets nothing more, and its queue can be drained.
func (f *Forwarder) SetRoutes(routes []Route) {
	f.mu.Lock()
	f.routes = append([]Route(nil), routes...)
	f.mu.Unlock()
	f.batch.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier: it waits for the batch in flight
	f.batch.Unlock()
}

// Stats returns a copy of the counts so far.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Delivered: maps.Clone(f.stats.Delivered), Overlaps: maps.Clone(f.stats.Overlaps), Won: maps.Clone(f.stats.Won), Fallback: f.stats.Fallback}
}

func (f *Forwarder) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

// Run forwards until ctx is done (nil) or the broker fails (the error;
// run it again to resume from the last acknowledged message).
func (f *Forwarder) Run(ctx context.Context) error {
	r, err := f.Broker.Open(ctx, f.Source)
	if err != nil {
		return fmt.Errorf("reading %s: %w", f.Source, err)
	}
	defer r.Close()
	for {
		msgs, err := r.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", f.Source, err)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := f.forward(ctx, r, msgs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// forward routes, sends and acknowledges one batch.
func (f *Forwarder) forward(ctx context.Context, r Receiver, msgs []Message) error {
	f.batch.Lock()
	defer f.batch.Unlock()
	f.mu.Lock()
	routes := f.routes
	f.mu.Unlock()
	type dest struct {
		q       Queue
		session string
		msgs    []Message
	}
	var order []*dest
	byQueue := map[Queue]*dest{}
	to := func(q Queue, session string) *dest {
		d := byQueue[q]
		if d == nil {
			d = &dest{q: q, session: session}
			byQueue[q] = d
			order = append(order, d)
		}
		return d
	}
	overlaps, won := map[string]int64{}, map[string]int64{}
	for i := range msgs {
		m := &msgs[i]
		winner := -1
		var others []string
		for j := range routes {
			if !routes[j].Filter.Match(m) {
				continue
			}
			if winner < 0 {
				winner = j
			} else {
				others = append(others, routes[j].Session)
				overlaps[routes[j].Session]++
			}
		}
		if winner < 0 {
			d := to(f.Fallback, "")
			d.msgs = append(d.msgs, *m)
			continue
		}
		d := to(routes[winner].Dest, routes[winner].Session)
		d.msgs = append(d.msgs, *m)
		if len(others) > 0 {
			won[routes[winner].Session]++
			if f.Overlap != nil {
				f.Overlap(routes[winner].Session, others, m)
			}
		}
	}
	for _, d := range order {
		if err := f.Broker.Send(ctx, d.q, d.msgs); err != nil {
			return fmt.Errorf("copying %d messages of %s to %s: %w", len(d.msgs), f.Source, d.q, err)
		}
	}
	if err := r.Ack(ctx, msgs); err != nil {
		return fmt.Errorf("acknowledging %d messages of %s (they were copied and will be again): %w", len(msgs), f.Source, err)
	}
	f.mu.Lock()
	if f.stats.Delivered == nil {
		f.stats.Delivered, f.stats.Overlaps, f.stats.Won = map[string]int64{}, map[string]int64{}, map[string]int64{}
	}
	for s, n := range won {
		f.stats.Won[s] += n
	}
	for _, d := range order {
		if d.session == "" {
			f.stats.Fallback += int64(len(d.msgs))
		} else {
			f.stats.Delivered[d.session] += int64(len(d.msgs))
		}
	}
	for s, n := range overlaps {
		f.stats.Overlaps[s] += n
	}
	f.mu.Unlock()
	f.log().Debug("forwarded", "source", f.Source.String(), "messages", len(msgs), "destinations", len(order))
	return nil
}

// Drain moves every message of from that its consumer has not
// acknowledged to to, acknowledging each batch after its copy is durable,
// until from has none left. It returns how many it moved. Nothing may
// consume from meanwhile.
func Drain(ctx context.Context, b Broker, from, to Queue) (int, error) {
	r, err := b.Open(ctx, from)
	if errors.Is(err, ErrNotFound) {
		return 0, nil // drained and deleted before
	}
	if err != nil {
		return 0, fmt.Errorf("draining %s: %w", from, err)
	}
	defer r.Close()
	moved := 0
	for {
		msgs, err := r.Receive(ctx)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			return moved, fmt.Errorf("draining %s into %s (%d moved): %w", from, to, moved, err)
		}
		if len(msgs) == 0 {
			lag, err := b.Lag(ctx, from)
			if err != nil {
				return moved, fmt.Errorf("draining %s into %s (%d moved): %w", from, to, moved, err)
			}
			if lag == 0 {
				return moved, nil
			}
			continue
		}
		if err := b.Send(ctx, to, msgs); err != nil {
			return moved, fmt.Errorf("draining %s into %s (%d moved): %w", from, to, moved, err)
		}
		if err := r.Ack(ctx, msgs); err != nil {
			return moved, fmt.Errorf("draining %s into %s (%d moved; the last %d will be copied again): %w", from, to, moved, len(msgs), err)
		}
		moved += len(msgs)
	}
}
