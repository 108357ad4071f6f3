package sqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

const (
	// maxEntries is how many messages one SendMessageBatch or
	// DeleteMessageBatch takes at most.
	maxEntries = 10
	// maxBatchBytes is SQS's bound on the size of a SendMessageBatch.
	maxBatchBytes = 256 << 10
)

// Send sends msgs to queue q.Name in order, in batches of up to 10 (and
// 256 KiB): it returns nil when SQS has accepted every one. A message it
// refused fails the Send, naming it; those before it in its batch and in
// earlier batches are sent, and are sent again with the batch's retry.
func (b *Broker) Send(ctx context.Context, q queue.Queue, msgs []queue.Message) error {
	op := fmt.Sprintf("sending %d messages to queue %s", len(msgs), q.Name)
	if len(msgs) == 0 {
		return nil
	}
	u, err := b.url(ctx, op, q.Name)
	if err != nil {
		return err
	}
	fifo := isFIFO(q.Name)
	var batch []types.SendMessageBatchRequestEntry
	var from []*queue.Message // the message of each entry of batch
	bytes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := b.sendBatch(ctx, u, batch, from)
		batch, from, bytes = batch[:0], from[:0], 0
		if isNotFound(err) {
			return b.missing(op, q.Name, err)
		}
		return b.fail(op, err, "")
	}
	for i := range msgs {
		e := entry(&msgs[i], strconv.Itoa(len(batch)), fifo)
		n := size(&e)
		if len(batch) == maxEntries || (len(batch) > 0 && bytes+n > maxBatchBytes) || b.cfg.GoAWS {
			if err := flush(); err != nil {
				return err
			}
			e.Id = aws.String("0")
		}
		batch, from, bytes = append(batch, e), append(from, &msgs[i]), bytes+n
	}
	return flush()
}

// sendBatch sends one batch to the queue at URL u; with Config.GoAWS, a
// batch of one as a SendMessage (goaws's SendMessageBatch drops message
// attributes).
func (b *Broker) sendBatch(ctx context.Context, u string, batch []types.SendMessageBatchRequestEntry, from []*queue.Message) error {
	if b.cfg.GoAWS && len(batch) == 1 {
		e := batch[0]
		out, err := b.c.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: aws.String(u), MessageBody: e.MessageBody, MessageAttributes: e.MessageAttributes,
			MessageSystemAttributes: e.MessageSystemAttributes, MessageGroupId: e.MessageGroupId,
			MessageDeduplicationId: e.MessageDeduplicationId,
		})
		if err != nil {
			return err
		}
		return checkAttributes(from[0], e.MessageAttributes, aws.ToString(out.MD5OfMessageAttributes))
	}
	out, err := b.c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(u), Entries: batch})
	if err != nil {
		return err
	}
	var errs []string
	for _, f := range out.Failed {
		i, err := strconv.Atoi(aws.ToString(f.Id))
		what := "entry " + aws.ToString(f.Id)
		if err == nil && i >= 0 && i < len(from) {
			what = from[i].Position
			if what == "" {
				what = fmt.Sprintf("the %d. of the batch", i+1)
			}
		}
		errs = append(errs, fmt.Sprintf("%s: %s: %s", what, aws.ToString(f.Code), aws.ToString(f.Message)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("SQS refused %d of %d messages: %s", len(out.Failed), len(batch), strings.Join(errs, "; "))
	}
	if len(out.Successful) != len(batch) {
		return fmt.Errorf("SQS accepted %d of %d messages and refused none", len(out.Successful), len(batch))
	}
	for _, s := range out.Successful {
		i, err := strconv.Atoi(aws.ToString(s.Id))
		if err != nil || i < 0 || i >= len(batch) {
			return fmt.Errorf("SQS answered for entry %q, which was not sent", aws.ToString(s.Id))
		}
		if err := checkAttributes(from[i], batch[i].MessageAttributes, aws.ToString(s.MD5OfMessageAttributes)); err != nil {
			return err
		}
	}
	return nil
}

// checkAttributes says whether SQS took the attributes of m, sent as
// attrs, by the digest it answered with.
func checkAttributes(m *queue.Message, attrs map[string]types.MessageAttributeValue, got string) error {
	want := attributesMD5(attrs)
	if want == "" || strings.EqualFold(got, want) {
		return nil
	}
	what := m.Position
	if what == "" {
		what = "a message"
	}
	if got == "" {
		return fmt.Errorf("SQS took %s without the message attributes it was sent with (goaws's SendMessageBatch drops them: the broker's GoAWS avoids it)", what)
	}
	return fmt.Errorf("SQS took %s with other message attributes than it was sent with (MD5 %s, want %s)", what, got, want)
}
