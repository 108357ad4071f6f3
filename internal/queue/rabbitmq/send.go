package rabbitmq

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
)

// publisher is the channel copies are published on, in confirm mode;
// returns holds the messages the broker could not route (mandatory).
type publisher struct {
	ch      *amqp.Channel
	returns chan amqp.Return
}

// publisher returns the publishing channel, opening it if it is not open.
// b.pubMu is held.
func (b *Broker) publisher(ctx context.Context) (*publisher, error) {
	if b.pub != nil && !b.pub.ch.IsClosed() {
		return b.pub, nil
	}
	ch, err := b.channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		b.closeChannel(ch)
		return nil, err
	}
	// A return comes before its message's confirm, and the library blocks
	// until it is taken: the buffer holds a whole chunk's.
	p := &publisher{ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, maxBatch))}
	b.pub = p
	return p, nil
}

// Send publishes msgs to queue q.Name through the default exchange,
// mandatory and confirmed: it returns nil when the broker has taken every
// one (to disk, for a durable queue and a persistent message), in order.
func (b *Broker) Send(ctx context.Context, q queue.Queue, msgs []queue.Message) error {
	op := fmt.Sprintf("sending %d messages to queue %s", len(msgs), q.Name)
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	for len(msgs) > 0 {
		n := min(len(msgs), maxBatch)
		if err := b.sendChunk(ctx, q, msgs[:n]); err != nil {
			return b.fail(op, err, "")
		}
		msgs = msgs[n:]
	}
	return nil
}

// sendChunk publishes at most maxBatch messages and waits for their
// confirms. b.pubMu is held.
func (b *Broker) sendChunk(ctx context.Context, q queue.Queue, msgs []queue.Message) error {
	p, err := b.publisher(ctx)
	if err != nil {
		return err
	}
	dcs := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	for i := range msgs {
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", q.Name, true, false, toPublishing(&msgs[i]))
		if err != nil {
			b.closeChannel(p.ch)
			return err
		}
		dcs = append(dcs, dc)
	}
	nacked := 0
	for _, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			b.closeChannel(p.ch) // its confirms would be out of step
			return err
		}
		if !ok {
			nacked++
		}
	}
	returned := 0
returns:
	for {
		select {
		case _, ok := <-p.returns:
			if !ok {
				break returns // the channel closed
			}
			returned++
		default:
			break returns
		}
	}
	switch {
	case returned > 0:
		return b.notFound("", q.Name, fmt.Errorf("the broker could not route %d of %d messages", returned, len(msgs)))
	case nacked > 0:
		if p.ch.IsClosed() {
			return fmt.Errorf("the channel closed before the broker confirmed %d of %d messages", nacked, len(msgs))
		}
		return fmt.Errorf("the broker refused (nack) %d of %d messages", nacked, len(msgs))
	}
	return nil
}
