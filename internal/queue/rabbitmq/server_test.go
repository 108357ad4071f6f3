package rabbitmq

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue/rabbitmq/rabbitmqtest"
)

// The tests run against Debian's rabbitmq-server (hack/install-deps.sh
// installs it), started once per test binary on loopback ports of its
// own, with an epmd of its own: TETHER_INTEGRATION=1 (make test) runs
// them.

var (
	srvOnce sync.Once
	srv     *rabbitmqtest.Server
	srvErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

// rabbit returns the URL of the shared test server, starting it first.
func rabbit(t *testing.T) string {
	t.Helper()
	if os.Getenv("TETHER_INTEGRATION") != "1" {
		t.Skip("runs against a real rabbitmq-server: TETHER_INTEGRATION=1 (make test sets it)")
	}
	srvOnce.Do(func() { srv, srvErr = rabbitmqtest.Start() })
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	return srv.URL
}

// newBroker is a Broker for the test server, closed at the end of t.
func newBroker(t *testing.T) *Broker {
	t.Helper()
	b, err := New(Config{URL: rabbit(t), Name: "tether-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// direct is a plain AMQP channel of the test's own, beside the Broker.
func direct(t *testing.T) *amqp.Channel {
	t.Helper()
	c, err := amqp.Dial(rabbit(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// declare makes a durable queue named after t, deleted at its end.
func declare(t *testing.T, ch *amqp.Channel, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s-%d", t.Name(), suffix, time.Now().UnixNano())
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(name, false, false, false) })
	return name
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
