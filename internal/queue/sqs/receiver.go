package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

const (
	// pollTime is how long a ReceiveMessage waits for a message (long
	// polling, in whole seconds).
	pollTime = time.Second
	// maxBatch bounds how many messages one Receive returns.
	maxBatch = 100
	// fillers is how many more ReceiveMessages fill a batch at once,
	// after a first one that came back full.
	fillers = 3
	// linger is how long the fillers start more receives.
	linger = 50 * time.Millisecond
)

// receiver receives one queue. What it received stays hidden from other
// receivers for the visibility timeout; what it did not delete by then
// comes back (also after it is closed).
type receiver struct {
	b    *Broker
	name string
	url  string
}

// Open finds queue q.Name; its receiver receives from where the queue is:
// SQS keeps no position.
func (b *Broker) Open(ctx context.Context, q queue.Queue) (queue.Receiver, error) {
	u, err := b.url(ctx, "receiving from queue "+q.Name, q.Name)
	if err != nil {
		return nil, err
	}
	return &receiver{b: b, name: q.Name, url: u}, nil
}

// receive is one ReceiveMessage of up to 10 messages, waiting up to
// pollTime for the first. (The SDK leaves out a WaitTimeSeconds of 0, and
// SQS then waits the queue's ReceiveMessageWaitTimeSeconds, up to 20 s:
// a receive that is not to wait long cannot say so, only wait 1 s.)
func (r *receiver) receive(ctx context.Context) ([]types.Message, error) {
	out, err := r.b.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(r.url),
		MaxNumberOfMessages:         maxEntries,
		WaitTimeSeconds:             int32(pollTime / time.Second),
		VisibilityTimeout:           int32(r.b.cfg.VisibilityTimeout / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// Receive returns the messages there are: it waits for the first up to
// pollTime or until ctx is done, and a full first answer (10) is followed
// by a few more receives at once, started for up to linger, up to
// maxBatch (the one that finds the queue empty waits pollTime). What SQS
// hands out to a receive that ctx ends stays hidden for the visibility
// timeout.
func (r *receiver) Receive(ctx context.Context) ([]queue.Message, error) {
	op := "receiving from queue " + r.name
	first, err := r.receive(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if isNotFound(err) {
			return nil, r.b.missing(op, r.name, err)
		}
		return nil, r.b.fail(op, err, "")
	}
	msgs := make([]queue.Message, 0, len(first))
	for i := range first {
		msgs = append(msgs, fromSQS(&first[i]))
	}
	if len(first) < maxEntries {
		return msgs, nil
	}
	// The fillers are not cancelled with ctx, to lose none of what SQS
	// hands out to them.
	fill, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(linger)
	var mu sync.Mutex
	var wg sync.WaitGroup
	asked := 0 // messages the fillers' receives in flight may add
	for range fillers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				mu.Lock()
				room := len(msgs)+asked+maxEntries <= maxBatch
				if room {
					asked += maxEntries
				}
				mu.Unlock()
				if !room {
					return
				}
				got, err := r.receive(fill)
				mu.Lock()
				asked -= maxEntries
				for i := range got {
					msgs = append(msgs, fromSQS(&got[i]))
				}
				mu.Unlock()
				if err != nil || len(got) < maxEntries {
					return // an error shows in the next Receive
				}
			}
		})
	}
	wg.Wait()
	return msgs, nil
}

// Ack deletes msgs from the queue, 10 by receipt handle at a time. One
// SQS could not delete fails it, named; one whose visibility timeout
// ended before was received again and will be copied again.
func (r *receiver) Ack(ctx context.Context, msgs []queue.Message) error {
	op := fmt.Sprintf("deleting %d received messages from queue %s", len(msgs), r.name)
	for len(msgs) > 0 {
		n := min(len(msgs), maxEntries)
		chunk := msgs[:n]
		msgs = msgs[n:]
		entries := make([]types.DeleteMessageBatchRequestEntry, n)
		for i := range chunk {
			h, ok := chunk[i].Ack.(string)
			if !ok || h == "" {
				return fmt.Errorf("sqs: message %s was not received from queue %s", chunk[i].Position, r.name)
			}
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h)}
		}
		out, err := r.b.c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(r.url), Entries: entries})
		if isNotFound(err) {
			return r.b.missing(op, r.name, err)
		}
		if err != nil {
			return r.b.fail(op, err, "")
		}
		if len(out.Failed) == 0 {
			continue
		}
		var errs []string
		for _, f := range out.Failed {
			what := "entry " + aws.ToString(f.Id)
			if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < len(chunk) {
				what = chunk[i].Position
			}
			errs = append(errs, fmt.Sprintf("%s: %s: %s", what, aws.ToString(f.Code), aws.ToString(f.Message)))
		}
		return r.b.fail(op, errors.New("SQS did not delete "+strings.Join(errs, "; ")),
			fmt.Sprintf("a message whose visibility timeout (%s) ended before it was deleted is received and copied again", r.b.cfg.VisibilityTimeout))
	}
	return nil
}

// Close does nothing: what was not deleted comes back when its
// visibility timeout ends.
func (r *receiver) Close() {}
