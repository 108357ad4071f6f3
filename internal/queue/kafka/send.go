package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/queue"
)

// samePartition puts each record in partition Partition mod the topic's
// partition count: a message read from partition p of a topic goes to
// partition p of a copy with as many partitions, so each key keeps its
// order there.
func samePartition() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int {
			p := int(r.Partition) % n
			if p < 0 {
				p += n
			}
			return p
		}
	})
}

// Send produces msgs to topic q.Name, each in partition m.Partition (mod
// the partition count), acknowledged by all in-sync replicas. It returns
// when all are, or with the first error. The producer is idempotent, so
// the messages of a partition land in the order of msgs.
func (b *Broker) Send(ctx context.Context, q queue.Queue, msgs []queue.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		r := &kgo.Record{Topic: q.Name, Key: m.Key, Value: m.Value, Partition: m.Partition}
		if len(m.Headers) > 0 {
			r.Headers = make([]kgo.RecordHeader, len(m.Headers))
			for j, h := range m.Headers {
				r.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
			}
		}
		recs[i] = r
	}
	op := fmt.Sprintf("sending %d messages to topic %s", len(msgs), q.Name)
	for _, res := range b.cl.ProduceSync(ctx, recs...) {
		if res.Err == nil {
			continue
		}
		if errors.Is(res.Err, kerr.UnknownTopicOrPartition) {
			return b.notFound(op, q.Name, res.Err)
		}
		return b.fail(op, fmt.Errorf("partition %d: %w", res.Record.Partition, res.Err), "")
	}
	return nil
}
