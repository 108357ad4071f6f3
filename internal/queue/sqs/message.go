package sqs

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

// Meta is what a queue.Message received from SQS keeps beyond its body,
// for a Send to copy: its typed message attributes and, in a FIFO queue,
// its message group and deduplication IDs.
type Meta struct {
	// MessageID is the message's ID in the queue it was received from.
	MessageID string
	// Attributes are its message attributes as SQS has them.
	Attributes map[string]types.MessageAttributeValue
	// MessageGroupID and MessageDeduplicationID are a FIFO queue's. A
	// copy keeps the group; its deduplication ID is MessageID (see entry).
	MessageGroupID, MessageDeduplicationID string
	// TraceHeader is its AWSTraceHeader (X-Ray), if any.
	TraceHeader string
}

// fromSQS is m as a queue.Message: its attributes as filter headers
// (String and Number ones as text, Binary ones as bytes), by name.
func fromSQS(m *types.Message) queue.Message {
	sys := m.Attributes
	meta := Meta{
		MessageID:              aws.ToString(m.MessageId),
		Attributes:             m.MessageAttributes,
		MessageGroupID:         sys[string(types.MessageSystemAttributeNameMessageGroupId)],
		MessageDeduplicationID: sys[string(types.MessageSystemAttributeNameMessageDeduplicationId)],
		TraceHeader:            sys[string(types.MessageSystemAttributeNameAWSTraceHeader)],
	}
	out := queue.Message{
		Value:    []byte(aws.ToString(m.Body)),
		Position: "message " + meta.MessageID,
		Ack:      aws.ToString(m.ReceiptHandle),
		Meta:     meta,
	}
	if n, _ := strconv.Atoi(sys[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); n > 1 {
		out.Position += fmt.Sprintf(" (received %d times)", n)
	}
	for _, k := range slices.Sorted(maps.Keys(m.MessageAttributes)) {
		v := m.MessageAttributes[k]
		h := queue.Header{Key: k, Value: []byte(aws.ToString(v.StringValue))}
		if v.BinaryValue != nil {
			h.Value = v.BinaryValue
		}
		out.Headers = append(out.Headers, h)
	}
	return out
}

// entry is m as a SendMessageBatch entry for a queue that is FIFO or not:
// exactly as received when it came from SQS, else its value with its
// headers as String attributes (those with empty values left out: SQS
// refuses them).
func entry(m *queue.Message, id string, fifo bool) types.SendMessageBatchRequestEntry {
	e := types.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(string(m.Value))}
	meta, fromSQS := m.Meta.(Meta)
	if fromSQS {
		e.MessageAttributes = meta.Attributes
		if meta.TraceHeader != "" {
			e.MessageSystemAttributes = map[string]types.MessageSystemAttributeValue{
				string(types.MessageSystemAttributeNameForSendsAWSTraceHeader): {DataType: aws.String("String"), StringValue: aws.String(meta.TraceHeader)},
			}
		}
	} else {
		for _, h := range m.Headers {
			if len(h.Value) == 0 {
				continue
			}
			if e.MessageAttributes == nil {
				e.MessageAttributes = map[string]types.MessageAttributeValue{}
			}
			e.MessageAttributes[h.Key] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(string(h.Value))}
		}
	}
	if !fifo {
		return e
	}
	// The group keeps the order of its messages. The deduplication ID is
	// the ID of the message copied, not its own deduplication ID: a copy
	// of the same message sent again is dropped as a duplicate, but not
	// one going back to a queue that saw the original (a Drain to the
	// source within SQS's 5 minutes of deduplication).
	group, dedup := "tether", ""
	switch {
	case fromSQS:
		if meta.MessageGroupID != "" {
			group = meta.MessageGroupID
		}
		dedup = meta.MessageID
	case len(m.Key) > 0:
		group = string(m.Key)
	}
	if dedup == "" {
		sum := sha256.Sum256(m.Value)
		dedup = hex.EncodeToString(sum[:])
	}
	e.MessageGroupId, e.MessageDeduplicationId = aws.String(group), aws.String(dedup)
	return e
}

// size is what e counts for SQS's limit on the size of a batch: its body
// and its attributes' names, types and values.
func size(e *types.SendMessageBatchRequestEntry) int {
	n := len(aws.ToString(e.MessageBody))
	for k, v := range e.MessageAttributes {
		n += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

// attributesMD5 is the MD5 digest of attrs that SQS answers a send with
// (MD5OfMessageAttributes), "" for none: by name, each name, data type,
// kind of value (1 string, 2 binary) and value, each length-prefixed.
func attributesMD5(attrs map[string]types.MessageAttributeValue) string {
	if len(attrs) == 0 {
		return ""
	}
	h := md5.New()
	put := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		h.Write(b)
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[k]
		put([]byte(k))
		put([]byte(aws.ToString(v.DataType)))
		if strings.HasPrefix(aws.ToString(v.DataType), "Binary") {
			h.Write([]byte{2})
			put(v.BinaryValue)
		} else {
			h.Write([]byte{1})
			put([]byte(aws.ToString(v.StringValue)))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
