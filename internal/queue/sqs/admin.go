package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

// fifoSuffix ends the name of every FIFO queue, and only theirs.
const fifoSuffix = ".fifo"

func isFIFO(name string) bool { return strings.HasSuffix(name, fifoSuffix) }

// copied are the attributes of a queue its copies get: how long messages
// stay hidden, kept and delayed, how long a receive waits, how large
// they may be, how they are encrypted and, for FIFO queues, deduplicated.
// Not its policy (it names the queue) nor its dead-letter queue.
var copied = []types.QueueAttributeName{
	types.QueueAttributeNameVisibilityTimeout,
	types.QueueAttributeNameMessageRetentionPeriod,
	types.QueueAttributeNameReceiveMessageWaitTimeSeconds,
	types.QueueAttributeNameDelaySeconds,
	types.QueueAttributeNameMaximumMessageSize,
	types.QueueAttributeNameKmsMasterKeyId,
	types.QueueAttributeNameKmsDataKeyReusePeriodSeconds,
	types.QueueAttributeNameSqsManagedSseEnabled,
	types.QueueAttributeNameContentBasedDeduplication,
	types.QueueAttributeNameDeduplicationScope,
	types.QueueAttributeNameFifoThroughputLimit,
}

// attributes returns the attributes of queue name that names name.
func (b *Broker) attributes(ctx context.Context, op, name string, names ...types.QueueAttributeName) (map[string]string, error) {
	u, err := b.url(ctx, op, name)
	if err != nil {
		return nil, err
	}
	out, err := b.c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(u), AttributeNames: names})
	if isNotFound(err) {
		return nil, b.missing(op, name, err)
	}
	if err != nil {
		return nil, b.fail(op, err, "")
	}
	return out.Attributes, nil
}

// Check says whether SQS answers and queue q.Name exists, asking SQS
// (not the cache of URLs).
func (b *Broker) Check(ctx context.Context, q queue.Queue) error {
	_, err := b.lookup(ctx, "checking queue "+q.Name, q.Name)
	return err
}

// Create creates queue q.Name with the attributes of queue like.Name that
// a copy should have (copied); the copy of a FIFO queue is one too, and
// its name must end in .fifo as well. A queue of that name that exists,
// even with other attributes, is not an error.
func (b *Broker) Create(ctx context.Context, q, like queue.Queue) error {
	op := fmt.Sprintf("creating queue %s like %s", q.Name, like.Name)
	attrs := map[string]string{}
	if like.Name != "" {
		got, err := b.attributes(ctx, op, like.Name, copied...)
		if err != nil {
			return err
		}
		for _, k := range copied {
			if v, ok := got[string(k)]; ok && v != "" {
				attrs[string(k)] = v
			}
		}
		if attrs[string(types.QueueAttributeNameKmsMasterKeyId)] != "" {
			delete(attrs, string(types.QueueAttributeNameSqsManagedSseEnabled)) // SQS takes one or the other
		}
	}
	switch {
	case like.Name != "" && isFIFO(like.Name) && !isFIFO(q.Name):
		return b.fail(op, fmt.Errorf("%s is a FIFO queue and %s does not end in %s", like.Name, q.Name, fifoSuffix),
			"the copy of a FIFO queue is a FIFO queue, whose name ends in .fifo: name it QUEUE-tether-NAME.fifo")
	case like.Name != "" && !isFIFO(like.Name) && isFIFO(q.Name):
		return b.fail(op, fmt.Errorf("%s is a standard queue and %s ends in %s", like.Name, q.Name, fifoSuffix),
			"only FIFO queues' names end in .fifo: name the copy of a standard queue without it")
	}
	if isFIFO(q.Name) {
		attrs[string(types.QueueAttributeNameFifoQueue)] = "true"
	} else {
		for _, k := range []types.QueueAttributeName{types.QueueAttributeNameContentBasedDeduplication,
			types.QueueAttributeNameDeduplicationScope, types.QueueAttributeNameFifoThroughputLimit} {
			delete(attrs, string(k))
		}
	}
	out, err := b.c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(q.Name), Attributes: attrs})
	if _, ok := errors.AsType[*types.QueueNameExists](err); ok || code(err) == "QueueAlreadyExists" {
		return nil // it exists with other attributes
	}
	if err != nil {
		return b.fail(op, err, "")
	}
	b.remember(q.Name, aws.ToString(out.QueueUrl))
	return nil
}

// Delete deletes queue q.Name, whatever it holds. A queue that does not
// exist is not an error. SQS takes up to 60 s to delete it, and refuses
// to create one of the same name meanwhile.
func (b *Broker) Delete(ctx context.Context, q queue.Queue) error {
	op := "deleting queue " + q.Name
	u, err := b.url(ctx, op, q.Name)
	if errors.Is(err, queue.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = b.c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(u)})
	b.remember(q.Name, "")
	if isNotFound(err) {
		return nil
	}
	return b.fail(op, err, "")
}

// Idle says true: SQS cannot tell whether something consumes a queue
// (receivers poll; nothing is registered). Lag counts the messages a
// consumer holds without having deleted them, so a Drain waits for those.
func (b *Broker) Idle(ctx context.Context, q queue.Queue) (bool, error) {
	return true, nil
}

// Lag is how many messages of q.Name are not deleted: those waiting
// (ApproximateNumberOfMessages), delayed (…Delayed) and received but not
// deleted yet (…NotVisible): a consumer that stopped without deleting
// what it received leaves it hidden until its visibility timeout ends,
// and a Drain must wait for those, or deleting the queue loses them. SQS
// counts approximately, and some seconds late. goaws (Config.GoAWS)
// counts them all in ApproximateNumberOfMessages.
func (b *Broker) Lag(ctx context.Context, q queue.Queue) (int64, error) {
	op := "counting the messages of queue " + q.Name
	names := []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages}
	if !b.cfg.GoAWS {
		names = append(names, types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
	}
	attrs, err := b.attributes(ctx, op, q.Name, names...)
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, k := range names {
		v, ok := attrs[string(k)]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, b.fail(op, fmt.Errorf("SQS answered %s %q, not a number", k, v), "")
		}
		lag += n
	}
	return lag, nil
}
