// Package sqs is the Amazon SQS queue.Broker that tether-operator splits
// queues with (aws-sdk-go-v2). SQS has no consumer groups: a queue.Queue
// is a queue name (its Group is empty), resolved to its URL once. A
// message is received with a visibility timeout, copied with
// SendMessageBatch and deleted from its source queue only once every copy
// was accepted; one not deleted comes back when its visibility timeout
// ends (at least once). Filters see the message attributes.
//
// The broker talks to one region with the static keys of its Config: it
// does not read the default AWS credential chain (environment, ~/.aws,
// instance roles). Without keys it sends unsigned requests, which only an
// emulator takes, so that needs an Endpoint.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"github.com/tether-dev/tether/internal/queue"
)

// Config says which SQS to talk to, and how.
type Config struct {
	// Region is the AWS region of the queues (eu-west-1).
	Region string
	// Endpoint, if set, is the SQS endpoint URL instead of AWS's for the
	// region: an emulator (http://goaws:4100) or a VPC endpoint.
	Endpoint string
	// AccessKeyID and SecretAccessKey are the keys requests are signed
	// with. Both or neither: neither sends unsigned requests, which only
	// an emulator at Endpoint takes.
	AccessKeyID, SecretAccessKey string
	// VisibilityTimeout is how long a received message stays hidden
	// from other receivers while it is copied (default 30 s): one not
	// acknowledged by then is received again.
	VisibilityTimeout time.Duration
	// GoAWS adapts the broker to the goaws 0.4 emulator (the local
	// cluster's SQS), which differs from SQS in ways the broker must
	// work around: it speaks only SQS's older query protocol (real SQS
	// takes it too, but the SDK speaks JSON); its SendMessageBatch drops
	// the messages' attributes, so each message goes in a SendMessage of
	// its own; and its ApproximateNumberOfMessages counts the messages in
	// flight already.
	GoAWS bool
}

// Broker is one SQS client with a cache of queue URLs.
type Broker struct {
	cfg  Config
	addr string // the endpoint, for errors
	c    *sqs.Client

	mu     sync.Mutex
	urls   map[string]string // queue name → URL
	closed bool
}

var _ queue.Broker = (*Broker)(nil)

// New returns a Broker for cfg. It does not call SQS yet: the first call
// does (Check says whether that works).
func New(cfg Config) (*Broker, error) {
	if cfg.Region == "" {
		return nil, errors.New("sqs: no region: set the queue's sqs.region (eu-west-1)")
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("sqs: set both the queue's sqs.accessKeyID and sqs.secretAccessKey, or neither")
	}
	addr := fmt.Sprintf("https://sqs.%s.amazonaws.com", cfg.Region)
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("sqs: endpoint %q is not an http:// or https:// URL of a host (want http://goaws:4100 or https://sqs.eu-west-1.amazonaws.com)", cfg.Endpoint)
		}
		addr = cfg.Endpoint
	}
	if cfg.AccessKeyID == "" && cfg.Endpoint == "" {
		return nil, errors.New("sqs: no keys: set the queue's sqs.accessKeyID and sqs.secretAccessKey (tether-operator does not read the default AWS credentials; only an emulator at sqs.endpoint takes requests without keys)")
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.VisibilityTimeout < time.Second {
		cfg.VisibilityTimeout = time.Second
	}
	opts := sqs.Options{
		Region:           cfg.Region,
		AppID:            "tether",
		RetryMaxAttempts: 3,
		Credentials:      aws.AnonymousCredentials{},
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	if cfg.AccessKeyID != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")
	}
	var fns []func(*sqs.Options)
	if cfg.GoAWS {
		fns = append(fns, func(o *sqs.Options) { o.Protocol = awsquery.New(schemas.AmazonSQS) })
	}
	return &Broker{cfg: cfg, addr: addr, c: sqs.New(opts, fns...), urls: map[string]string{}}, nil
}

// Close forgets the queue URLs; the client holds nothing open beyond idle
// HTTP connections.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.urls = map[string]string{}
	return nil
}

// url returns the URL of queue name, asking SQS unless it is cached.
func (b *Broker) url(ctx context.Context, op, name string) (string, error) {
	b.mu.Lock()
	u, ok := b.urls[name]
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return "", b.fail(op, errors.New("the broker is closed"), "")
	}
	if ok {
		return u, nil
	}
	return b.lookup(ctx, op, name)
}

// lookup asks SQS for the URL of queue name and caches it.
func (b *Broker) lookup(ctx context.Context, op, name string) (string, error) {
	out, err := b.c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		if isNotFound(err) {
			return "", b.notFound(op, name, err)
		}
		return "", b.fail(op, err, "")
	}
	u := aws.ToString(out.QueueUrl)
	b.remember(name, u)
	return u, nil
}

// remember caches the URL of queue name ("" forgets it).
func (b *Broker) remember(name, u string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u == "" {
		delete(b.urls, name)
	} else if !b.closed {
		b.urls[name] = u
	}
}

// missing is the error about queue name, whose cached URL SQS no longer
// knows: it is forgotten, for a queue created again to be looked up.
func (b *Broker) missing(op, name string, err error) error {
	b.remember(name, "")
	return b.notFound(op, name, err)
}
