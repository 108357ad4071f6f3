package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tether-dev/tether/internal/queue"
)

// partitions returns topic's partitions, asking the brokers (not the
// client's metadata cache, which can be some seconds old and so miss a
// topic just created or deleted); it also refreshes that cache for the
// kadm calls that follow.
func (b *Broker) partitions(ctx context.Context, op, topic string) ([]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, b.cl)
	if err != nil {
		return nil, b.fail(op, err, "")
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return nil, b.notFound(op, topic, err)
			}
			return nil, b.fail(op, fmt.Errorf("topic %s: %w", topic, err), "")
		}
		ps := make([]int32, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ps = append(ps, p.Partition)
		}
		if len(ps) == 0 {
			return nil, b.fail(op, fmt.Errorf("topic %s has no partitions", topic), "")
		}
		slices.Sort(ps)
		return ps, nil
	}
	return nil, b.notFound(op, topic, errors.New("not in the brokers' metadata"))
}

// Create creates topic q.Name with as many partitions as topic like.Name
// and the brokers' default replication factor.
func (b *Broker) Create(ctx context.Context, q, like queue.Queue) error {
	op := fmt.Sprintf("creating topic %s like %s", q.Name, like.Name)
	ps, err := b.partitions(ctx, op, like.Name)
	if err != nil {
		return err
	}
	_, err = b.adm.CreateTopic(ctx, int32(len(ps)), -1, nil, q.Name)
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return b.fail(op, err, "")
}

// Delete deletes topic q.Name and consumer group q.Group (if any).
func (b *Broker) Delete(ctx context.Context, q queue.Queue) error {
	op := "deleting topic " + q.Name
	if _, err := b.adm.DeleteTopic(ctx, q.Name); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return b.fail(op, err, "")
	}
	// Forget what the producer knew of it (partitions, topic ID), for a
	// topic of that name created again.
	b.cl.PurgeTopicsFromClient(q.Name)
	if q.Group == "" {
		return nil
	}
	op = "deleting consumer group " + q.Group
	_, err := b.adm.DeleteGroup(ctx, q.Group)
	switch {
	case err == nil, errors.Is(err, kerr.GroupIDNotFound):
		return nil
	case errors.Is(err, kerr.NonEmptyGroup):
		return b.fail(op, err, fmt.Sprintf("something still consumes with group %s: stop it, then delete again", q.Group))
	}
	return b.fail(op, err, "")
}

// Idle says whether consumer group q.Group has no members, in the classic
// group protocol or the consumer (KIP-848) one.
func (b *Broker) Idle(ctx context.Context, q queue.Queue) (bool, error) {
	if q.Group == "" {
		return true, nil
	}
	op := "describing consumer group " + q.Group
	gs, err := b.adm.DescribeGroups(ctx, q.Group)
	if err != nil {
		return false, b.fail(op, err, "")
	}
	if g, ok := gs[q.Group]; ok {
		if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
			return false, b.fail(op, g.Err, "")
		}
		if g.Err == nil && len(g.Members) > 0 {
			return false, nil
		}
	}
	// A group of the consumer protocol has no classic members: the
	// classic describe says it is dead, unknown or has none.
	cgs, err := b.adm.DescribeConsumerGroups(ctx, q.Group)
	if err != nil {
		if !b.supports(ctx, kmsg.ConsumerGroupDescribe) {
			return true, nil // brokers before Kafka 3.7 have only classic groups
		}
		return false, b.fail(op, err, "")
	}
	if g, ok := cgs[q.Group]; ok {
		if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
			return false, b.fail(op, g.Err, "")
		}
		if g.Err == nil && len(g.Members) > 0 {
			return false, nil
		}
	}
	return true, nil
}

// supports says whether the brokers answer requests of key (false if
// they cannot tell).
func (b *Broker) supports(ctx context.Context, key kmsg.Key) bool {
	vs, err := b.adm.ApiVersions(ctx)
	if err != nil {
		return false
	}
	ok := false
	vs.Each(func(v kadm.BrokerApiVersions) {
		if _, has := v.KeyMaxVersion(int16(key)); has && v.Err == nil {
			ok = true
		}
	})
	return ok
}

// Lag is how many messages of q.Name come after q.Group's committed
// offsets (or the start of the log, for partitions without a commit).
func (b *Broker) Lag(ctx context.Context, q queue.Queue) (int64, error) {
	op := "measuring the lag of " + q.String()
	if _, err := b.partitions(ctx, op, q.Name); err != nil {
		return 0, err
	}
	start, err := b.adm.ListStartOffsets(ctx, q.Name)
	if err == nil {
		err = start.Error()
	}
	if err != nil {
		return 0, b.listFail(op, q.Name, err)
	}
	end, err := b.adm.ListEndOffsets(ctx, q.Name)
	if err == nil {
		err = end.Error()
	}
	if err != nil {
		return 0, b.listFail(op, q.Name, err)
	}
	committed, err := b.committed(ctx, op, q)
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, e := range end[q.Name] {
		from := start[q.Name][p].Offset
		if c, ok := committed[p]; ok && c > from {
			from = c
		}
		if e.Offset > from {
			lag += e.Offset - from
		}
	}
	return lag, nil
}

// listFail is the error of listing topic's offsets.
func (b *Broker) listFail(op, topic string, err error) error {
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return b.notFound(op, topic, err)
	}
	return b.fail(op, err, "")
}

// committed returns q.Group's committed offsets in q.Name by partition
// (none for a partition without a commit, or if q.Group is empty or
// unknown).
func (b *Broker) committed(ctx context.Context, op string, q queue.Queue) (map[int32]int64, error) {
	out := map[int32]int64{}
	if q.Group == "" {
		return out, nil
	}
	resps, err := b.adm.FetchOffsets(ctx, q.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, b.fail(op, fmt.Errorf("fetching the offsets of group %s: %w", q.Group, err), "")
	}
	for p, r := range resps[q.Name] {
		if r.Err != nil {
			return nil, b.fail(op, fmt.Errorf("fetching the offset of group %s in partition %d: %w", q.Group, p, r.Err), "")
		}
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out, nil
}
