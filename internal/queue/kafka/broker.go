// Package kafka is the Kafka queue.Broker that tether-operator splits topics with.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/queue"
)

// Config says which Kafka cluster to talk to.
type Config struct {
	// Brokers are the seed brokers, host:port (port 9092 if left out).
	Brokers []string
	// ClientID is the client id the brokers see (default "tether").
	ClientID string
}

// Broker is a connection to one Kafka cluster: one client for
// administration and producing, and one more per open Receiver.
type Broker struct {
	cfg   Config
	addrs string // cfg.Brokers, for errors
	cl    *kgo.Client
	adm   *kadm.Client

	mu     sync.Mutex
	closed bool
	open   map[*receiver]struct{}
}

var _ queue.Broker = (*Broker)(nil)

// New returns a Broker for cfg. It does not connect yet: the first call
// does (Check says whether that works).
func New(cfg Config) (*Broker, error) {
	var brokers []string
	for _, b := range cfg.Brokers {
		b = strings.TrimSpace(b)
		if b == "" {
			return nil, fmt.Errorf("kafka: empty broker address in %q", cfg.Brokers)
		}
		brokers = append(brokers, b)
	}
	if len(brokers) == 0 {
		return nil, errors.New("kafka: no brokers: set the queue's brokers (host:port, comma-separated)")
	}
	cfg.Brokers = brokers
	if cfg.ClientID == "" {
		cfg.ClientID = "tether"
	}
	cl, err := kgo.NewClient(append(cfg.opts(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(samePartition()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: client for %s: %w", strings.Join(brokers, ","), err)
	}
	return &Broker{
		cfg:   cfg,
		addrs: strings.Join(brokers, ","),
		cl:    cl,
		adm:   kadm.NewClient(cl),
		open:  map[*receiver]struct{}{},
	}, nil
}

// opts are the options every client of cfg has.
func (cfg Config) opts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
	}
}

// Close closes the receivers still open and the client.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	open := b.open
	b.open = nil
	b.mu.Unlock()
	for r := range open {
		r.Close()
	}
	b.adm.Close() // closes b.cl
	return nil
}

// Check says whether the brokers answer and topic q.Name exists.
func (b *Broker) Check(ctx context.Context, q queue.Queue) error {
	_, err := b.partitions(ctx, "checking topic "+q.Name, q.Name)
	return err
}
