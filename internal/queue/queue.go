// Package queue is what tether-operator's queue splitting needs of a
// message broker, behind one small interface (Broker), and the broker-
// independent parts: message filters, the forwarder that routes each
// message of a workload's queue to the one session whose filter matches
// (else to the deployed workload's fallback queue), and draining a
// temporary queue back. Each broker is a sub-package (queue/kafka,
// queue/rabbitmq, queue/sqs); only the operator links them.
package queue

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotFound is wrapped by a broker's errors about a queue that does not
// exist.
var ErrNotFound = errors.New("no such queue")

// Kinds of broker.
const (
	KindKafka    = "kafka"
	KindRabbitMQ = "rabbitmq"
	KindSQS      = "sqs"
)

// Queue names one queue of a broker: a Kafka topic with the consumer group
// whose committed offsets are "where its consumer left off", a RabbitMQ
// queue or an SQS queue (Group empty).
type Queue struct {
	Name  string
	Group string
}

func (q Queue) String() string {
	if q.Group == "" {
		return q.Name
	}
	return q.Name + " (group " + q.Group + ")"
}

// Header is one message header (Kafka), property or header (RabbitMQ) or
// message attribute (SQS).
type Header struct {
	Key   string
	Value []byte
}

// Message is one message as the forwarder moves it.
type Message struct {
	Key     []byte
	Value   []byte
	Headers []Header
	// Partition is the Kafka partition it was read from: its copies go to
	// the same partition of their destination, so the order of each
	// partition key holds there.
	Partition int32
	// Position says where it was read (for logs: "partition 0 offset 17").
	Position string
	// Ack is the broker's handle for acknowledging it; only its
	// Receiver reads it.
	Ack any
	// Meta is what else the broker keeps of the message (RabbitMQ: its
	// properties and typed headers), for a Send to a queue of the same
	// broker to copy exactly; Headers are for filters.
	Meta any
}

// Header returns the value of header k and whether it is there.
func (m *Message) Header(k string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// Broker is one broker connection. Every method is safe for concurrent use.
type Broker interface {
	// Check says whether q exists and the broker answers, with an error
	// a user can act on.
	Check(ctx context.Context, q Queue) error
	// Create makes temporary queue q like queue like (Kafka: as many
	// partitions). Creating one that exists is not an error.
	Create(ctx context.Context, q, like Queue) error
	// Delete removes q and, for Kafka, its group. Deleting one that does
	// not exist is not an error.
	Delete(ctx context.Context, q Queue) error
	// Idle says whether nothing consumes q now (Kafka: q's group has no
	// members). A broker that cannot tell says true.
	Idle(ctx context.Context, q Queue) (bool, error)
	// Lag is how many messages of q its consumer has not acknowledged.
	Lag(ctx context.Context, q Queue) (int64, error)
	// Open starts reading q from where its consumer left off.
	Open(ctx context.Context, q Queue) (Receiver, error)
	// Send writes msgs to q, in order, durably (acknowledged by the
	// broker) when it returns nil.
	Send(ctx context.Context, q Queue, msgs []Message) error
	Close() error
}

// Receiver reads one queue.
type Receiver interface {
	// Receive returns the next messages, waiting for some at most until
	// ctx is done; none and a nil error when the queue had none within the
	// broker's poll time (a drained queue).
	Receive(ctx context.Context) ([]Message, error)
	// Ack acknowledges msgs (Kafka: commits the offsets after them for
	// the queue's group): they are not received again.
	Ack(ctx context.Context, msgs []Message) error
	Close()
}

// Error is a broker error a user can act on: what failed, on which broker,
// and what to do.
type Error struct {
	Kind, Broker, Op string
	Err              error
	Hint             string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s at %s: %s: %v", e.Kind, e.Broker, e.Op, e.Err)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Fail makes err an *Error of a broker of kind at addr about op: err
// itself if it is one already, else with hint or, if that is empty,
// hints(err). It is nil for a nil err.
func Fail(kind, addr, op string, err error, hint string, hints func(error) string) error {
	if err == nil {
		return nil
	}
	if qe, ok := errors.AsType[*Error](err); ok {
		return qe
	}
	if hint == "" && !errors.Is(err, context.Canceled) {
		hint = hints(err)
	}
	return &Error{Kind: kind, Broker: addr, Op: op, Err: err, Hint: hint}
}

// NotFound is err about the missing queue (or topic) name: it wraps
// ErrNotFound.
func NotFound(what, name string, err error) error {
	return fmt.Errorf("%s %s: %w: %w", what, name, ErrNotFound, err)
}
