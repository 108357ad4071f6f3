package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
)

const (
	// pollTime bounds how long Receive waits for messages.
	pollTime = 500 * time.Millisecond
	// maxBatch bounds how many messages one Receive returns; it is also
	// the prefetch: the broker hands out no more unacknowledged.
	maxBatch = 500
	// linger is how long a batch waits for more after its first message.
	linger = 2 * time.Millisecond
)

// receiver consumes one queue on a channel of its own, acknowledging by
// hand: what it received and did not acknowledge goes back to the queue
// when it closes or its connection breaks.
type receiver struct {
	b          *Broker
	q          queue.Queue
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	closing    chan *amqp.Error
	once       sync.Once
}

// Open consumes q.Name (manual acknowledgements).
func (b *Broker) Open(ctx context.Context, q queue.Queue) (queue.Receiver, error) {
	op := "consuming queue " + q.Name
	ch, err := b.channel(ctx)
	if err != nil {
		return nil, b.fail(op, err, "")
	}
	if err := ch.Qos(maxBatch, 0, false); err != nil {
		b.closeChannel(ch)
		return nil, b.fail(op, err, "")
	}
	closing := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.ConsumeWithContext(ctx, q.Name, "", false, false, false, false, nil)
	if isCode(err, amqp.NotFound) {
		b.closeChannel(ch)
		return nil, b.notFound(op, q.Name, err)
	}
	if err != nil {
		b.closeChannel(ch)
		return nil, b.fail(op, err, "")
	}
	return &receiver{b: b, q: q, ch: ch, deliveries: ds, closing: closing}, nil
}

// Receive returns the deliveries there are, waiting for the first at most
// pollTime or until ctx is done.
func (r *receiver) Receive(ctx context.Context) ([]queue.Message, error) {
	t := time.NewTimer(pollTime)
	defer t.Stop()
	var msgs []queue.Message
	select {
	case d, ok := <-r.deliveries:
		if !ok {
			return nil, r.broken()
		}
		msgs = append(msgs, fromDelivery(&d))
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// The library hands deliveries over one by one: what comes within
	// linger of the first joins its batch, whose copies are then
	// confirmed together.
	t.Reset(linger)
	for len(msgs) < maxBatch {
		select {
		case d, ok := <-r.deliveries:
			if !ok {
				return msgs, nil // the next Receive says why
			}
			msgs = append(msgs, fromDelivery(&d))
		case <-t.C:
			return msgs, nil
		case <-ctx.Done():
			return msgs, nil
		}
	}
	return msgs, nil
}

// broken is the error of a receiver whose channel closed.
func (r *receiver) broken() error {
	op := "consuming queue " + r.q.Name
	select {
	case e, ok := <-r.closing:
		if ok && e != nil {
			if e.Code == amqp.NotFound {
				return r.b.notFound(op, r.q.Name, e)
			}
			return r.b.fail(op, e, "")
		}
	default:
	}
	return r.b.fail(op, errors.New("the channel closed"), "")
}

// Ack acknowledges msgs on the channel they came on. AMQP does not
// confirm acknowledgements: one lost with a broken connection makes the
// broker deliver its message again (at least once).
func (r *receiver) Ack(ctx context.Context, msgs []queue.Message) error {
	for i := range msgs {
		tag, ok := msgs[i].Ack.(uint64)
		if !ok {
			return fmt.Errorf("rabbitmq: message %s was not received from queue %s", msgs[i].Position, r.q.Name)
		}
		if err := r.ch.Ack(tag, false); err != nil {
			return r.b.fail(fmt.Sprintf("acknowledging %d messages of queue %s", len(msgs), r.q.Name), err, "")
		}
	}
	return nil
}

// Close closes the channel: what was not acknowledged goes back to the
// queue.
func (r *receiver) Close() {
	r.once.Do(func() { r.b.closeChannel(r.ch) })
}
