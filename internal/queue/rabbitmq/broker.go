// Package rabbitmq is the RabbitMQ queue.Broker that tether-operator
// splits queues with (AMQP 0-9-1, amqp091-go). Copies are published with
// publisher confirms through the default exchange, so a message is
// acknowledged on its source queue only once the broker has taken its
// copy; filters see the message's headers and, as "property:NAME", its
// properties.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
)

// Config says which RabbitMQ to talk to.
type Config struct {
	// URL is an AMQP URL: amqp://user:password@host:5672/vhost (amqps://
	// for TLS).
	URL string
	// Name is the connection name the broker shows (default "tether").
	Name string
	// DialTimeout bounds connecting (default 10 s).
	DialTimeout time.Duration
}

// Broker is one AMQP connection, opened on first use and again after it
// broke: a channel per administrative call, one for publishing and one
// per open Receiver.
type Broker struct {
	cfg  Config
	addr string // cfg.URL without its password, for errors

	mu     sync.Mutex
	conn   *amqp.Connection
	closed bool

	pubMu sync.Mutex // held by a Send
	pub   *publisher
}

var _ queue.Broker = (*Broker)(nil)

// New returns a Broker for cfg. It does not connect yet: the first call
// does (Check says whether that works).
func New(cfg Config) (*Broker, error) {
	if cfg.URL == "" {
		return nil, errors.New("rabbitmq: no URL: set the queue's url (amqp://user:password@host:5672/vhost)")
	}
	u, err := amqp.ParseURI(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: url %s: %s (want amqp://user:password@host:5672/vhost)", redact(cfg.URL), redact(err.Error()))
	}
	if cfg.Name == "" {
		cfg.Name = "tether"
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	return &Broker{cfg: cfg, addr: fmt.Sprintf("%s://%s:%d, vhost %s", u.Scheme, u.Host, u.Port, u.Vhost)}, nil
}

// password is the :password@ of a URL.
var password = regexp.MustCompile(`(://[^:@/]*):[^@/]*@`)

// redact is s (a URL, or an error quoting one) without the URL's
// password.
func redact(s string) string {
	return password.ReplaceAllString(s, "$1:xxxxx@")
}

// connection returns the open connection, dialling it if there is none.
func (b *Broker) connection(ctx context.Context) (*amqp.Connection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("the broker connection is closed")
	}
	if b.conn != nil && !b.conn.IsClosed() {
		return b.conn, nil
	}
	d := net.Dialer{Timeout: b.cfg.DialTimeout}
	conn, err := amqp.DialConfig(b.cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": b.cfg.Name},
		Dial: func(network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		return nil, err
	}
	b.conn = conn
	return conn, nil
}

// channel opens a channel of its own for one call.
func (b *Broker) channel(ctx context.Context) (*amqp.Channel, error) {
	conn, err := b.connection(ctx)
	if err != nil {
		return nil, err
	}
	return conn.Channel()
}

// closeTimeout bounds how long closing a channel waits for the broker's
// answer.
const closeTimeout = 5 * time.Second

// closeChannel closes ch, waiting at most closeTimeout for the broker's
// close-ok. Without an answer the connection is closed (forcibly, after
// closeTimeout more): every channel on it ends, nothing waits on it
// forever, and the next call dials again. (A Channel.Close that never
// returned wedged a forwarder once in this package's tests.)
func (b *Broker) closeChannel(ch *amqp.Channel) {
	done := make(chan struct{})
	go func() { _ = ch.Close(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(closeTimeout):
	}
	b.mu.Lock()
	conn := b.conn
	b.conn = nil
	b.mu.Unlock()
	if conn != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
	}
	<-done
}

// Close closes the connection (and with it every Receiver).
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.conn != nil {
		return b.conn.CloseDeadline(time.Now().Add(closeTimeout))
	}
	return nil
}

// inspect is the broker's count of q's ready messages and consumers.
func (b *Broker) inspect(ctx context.Context, op string, q queue.Queue) (amqp.Queue, error) {
	ch, err := b.channel(ctx)
	if err != nil {
		return amqp.Queue{}, b.fail(op, err, "")
	}
	defer b.closeChannel(ch)
	st, err := ch.QueueDeclarePassive(q.Name, false, false, false, false, nil)
	if isCode(err, amqp.NotFound) {
		return amqp.Queue{}, b.notFound(op, q.Name, err)
	}
	return st, b.fail(op, err, "")
}

// Check says whether the broker answers and queue q.Name exists.
func (b *Broker) Check(ctx context.Context, q queue.Queue) error {
	_, err := b.inspect(ctx, "checking queue "+q.Name, q)
	return err
}

// Create declares q durable (like is not looked at: AMQP cannot read a
// queue's arguments). A queue of that name that exists, even declared
// otherwise, is not an error.
func (b *Broker) Create(ctx context.Context, q, like queue.Queue) error {
	op := "creating queue " + q.Name
	ch, err := b.channel(ctx)
	if err != nil {
		return b.fail(op, err, "")
	}
	defer b.closeChannel(ch)
	_, err = ch.QueueDeclare(q.Name, true, false, false, false, nil)
	if isCode(err, amqp.PreconditionFailed) {
		return nil // it exists with other arguments
	}
	return b.fail(op, err, "")
}

// Delete deletes q, whatever it holds. A queue that does not exist is not
// an error.
func (b *Broker) Delete(ctx context.Context, q queue.Queue) error {
	op := "deleting queue " + q.Name
	ch, err := b.channel(ctx)
	if err != nil {
		return b.fail(op, err, "")
	}
	defer b.closeChannel(ch)
	_, err = ch.QueueDelete(q.Name, false, false, false)
	if isCode(err, amqp.NotFound) {
		return nil
	}
	return b.fail(op, err, "")
}

// Idle says whether q has no consumers; one that does not exist (deleted
// already) has none.
func (b *Broker) Idle(ctx context.Context, q queue.Queue) (bool, error) {
	st, err := b.inspect(ctx, "counting the consumers of queue "+q.Name, q)
	if errors.Is(err, queue.ErrNotFound) {
		return true, nil
	}
	return st.Consumers == 0, err
}

// Lag is how many messages of q wait for a consumer (ready; those
// delivered and not yet acknowledged are not counted).
func (b *Broker) Lag(ctx context.Context, q queue.Queue) (int64, error) {
	st, err := b.inspect(ctx, "counting the messages of queue "+q.Name, q)
	return int64(st.Messages), err
}
