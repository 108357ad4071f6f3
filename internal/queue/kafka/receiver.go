package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/queue"
)

const (
	// pollTime bounds how long Receive waits for messages.
	pollTime = 500 * time.Millisecond
	// maxBatch bounds how many messages one Receive returns.
	maxBatch = 1000
)

// position is a message's Ack: where it was read.
type position struct {
	partition   int32
	offset      int64
	leaderEpoch int32
}

// receiver reads the partitions of one topic directly (not as a member of
// the group, whose members would get them assigned) and commits for the
// group from outside it.
type receiver struct {
	b  *Broker
	q  queue.Queue
	cl *kgo.Client

	mu   sync.Mutex
	err  error // the fetch error that broke it, sticky
	once sync.Once
}

// Open starts reading topic q.Name where group q.Group left off: at its
// committed offset in each partition, or the start of the log in those it
// has none in.
func (b *Broker) Open(ctx context.Context, q queue.Queue) (queue.Receiver, error) {
	op := "opening " + q.String()
	if q.Group == "" {
		return nil, b.fail(op, errors.New("no consumer group"),
			"a Kafka queue needs the consumer group whose committed offsets say where its consumer left off")
	}
	ps, err := b.partitions(ctx, op, q.Name)
	if err != nil {
		return nil, err
	}
	committed, err := b.committed(ctx, op, q)
	if err != nil {
		return nil, err
	}
	from := make(map[int32]kgo.Offset, len(ps))
	for _, p := range ps {
		if c, ok := committed[p]; ok {
			from[p] = kgo.NewOffset().At(c)
		} else {
			from[p] = kgo.NewOffset().AtStart()
		}
	}
	cl, err := kgo.NewClient(append(b.cfg.opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{q.Name: from}),
		// A committed offset out of the log (its records expired, or
		// the topic was made again) reads from the start.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(pollTime),
	)...)
	if err != nil {
		return nil, b.fail(op, err, "")
	}
	r := &receiver{b: b, q: q, cl: cl}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cl.Close()
		return nil, b.fail(op, errors.New("the broker connection is closed"), "")
	}
	b.open[r] = struct{}{}
	return r, nil
}

// Receive returns the next messages (at most maxBatch), waiting for some
// at most pollTime or until ctx is done; none and a nil error if none
// came. After a fetch error it returns that error, from then on: the
// messages fetched since the last Ack are received again by a new Open.
func (r *receiver) Receive(ctx context.Context) ([]queue.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	pctx, cancel := context.WithTimeout(ctx, pollTime)
	defer cancel()
	fs := r.cl.PollRecords(pctx, maxBatch)
	if fs.IsClientClosed() {
		r.err = r.b.fail("reading "+r.q.String(), errors.New("the receiver is closed"), "")
		return nil, r.err
	}
	var ferr error
	fs.EachError(func(topic string, p int32, err error) {
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			// The poll's time is up (or ctx is done).
		case errors.As(err, &loss):
			// The log does not hold the offset it read at (any
			// more); it goes on from where it reset to, as a new Open
			// would.
		case ferr == nil:
			ferr = fmt.Errorf("fetching topic %s partition %d: %w", topic, p, err)
		}
	})
	if ferr != nil {
		r.err = r.b.fail("reading "+r.q.String(), ferr, "")
		return nil, r.err
	}
	var msgs []queue.Message
	fs.EachRecord(func(rec *kgo.Record) {
		m := queue.Message{
			Key:       rec.Key,
			Value:     rec.Value,
			Partition: rec.Partition,
			Position:  fmt.Sprintf("partition %d offset %d", rec.Partition, rec.Offset),
			Ack:       position{partition: rec.Partition, offset: rec.Offset, leaderEpoch: rec.LeaderEpoch},
		}
		if len(rec.Headers) > 0 {
			m.Headers = make([]queue.Header, len(rec.Headers))
			for i, h := range rec.Headers {
				m.Headers[i] = queue.Header{Key: h.Key, Value: h.Value}
			}
		}
		msgs = append(msgs, m)
	})
	if len(msgs) == 0 && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return msgs, nil
}

// Ack commits, for the group, the offset after the last of msgs in each
// partition, as a commit from outside the group (which the brokers refuse
// while the group has members).
func (r *receiver) Ack(ctx context.Context, msgs []queue.Message) error {
	op := fmt.Sprintf("committing %d messages of %s", len(msgs), r.q)
	last := map[int32]position{}
	for i := range msgs {
		pos, ok := msgs[i].Ack.(position)
		if !ok {
			return r.b.fail(op, fmt.Errorf("message %d (%s) was not received from Kafka", i, msgs[i].Position), "")
		}
		if l, seen := last[pos.partition]; !seen || pos.offset > l.offset {
			last[pos.partition] = pos
		}
	}
	if len(last) == 0 {
		return nil
	}
	offs := kadm.Offsets{}
	for p, pos := range last {
		offs.Add(kadm.Offset{Topic: r.q.Name, Partition: p, At: pos.offset + 1, LeaderEpoch: pos.leaderEpoch})
	}
	resps, err := r.b.adm.CommitOffsets(ctx, r.q.Group, offs)
	if err == nil {
		err = resps.Error()
	}
	if groupActive(err) {
		return r.b.fail(op, fmt.Errorf("%w: %w", ErrGroupActive, err),
			fmt.Sprintf("something still consumes topic %s with group %s; tether-operator commits for the group only while it has no members", r.q.Name, r.q.Group))
	}
	return r.b.fail(op, err, "")
}

// Close closes the receiver's client.
func (r *receiver) Close() {
	r.once.Do(func() {
		r.cl.Close()
		r.b.mu.Lock()
		delete(r.b.open, r)
		r.b.mu.Unlock()
	})
}
