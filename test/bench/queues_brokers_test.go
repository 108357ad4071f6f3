package bench

import (
	"context"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/queue"
	"github.com/tether-dev/tether/internal/queue/kafka"
	"github.com/tether-dev/tether/internal/queue/rabbitmq"
	"github.com/tether-dev/tether/internal/queue/rabbitmq/rabbitmqtest"
)

// kafkaBench is franz-go's kfake (one broker, in this process) with
// one-partition topics.
func kafkaBench(t *testing.T) benchQueues {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b, err := kafka.New(kafka.Config{Brokers: c.ListenAddrs(), ClientID: "tether-bench"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	return benchQueues{
		kind: "Kafka", broker: b,
		fresh: func(t *testing.T, name string) queue.Queue {
			if _, err := adm.CreateTopic(t.Context(), 1, -1, nil, name); err != nil {
				t.Fatal(err)
			}
			return queue.Queue{Name: name, Group: name + "-app"}
		},
		publish: func(t *testing.T, q queue.Queue, n, rate int) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			var first error
			paced(n, rate, func(int) {
				wg.Add(1)
				cl.Produce(t.Context(), &kgo.Record{Topic: q.Name, Value: stamp(), Headers: []kgo.RecordHeader{{Key: "x-tether-user", Value: []byte("me")}}},
					func(_ *kgo.Record, err error) {
						if err != nil {
							mu.Lock()
							first = err
							mu.Unlock()
						}
						wg.Done()
					})
			})
			wg.Wait()
			if first != nil {
				t.Fatalf("producing to %s: %v", q.Name, first)
			}
		},
		consume: func(t *testing.T, q queue.Queue, n int) ([]float64, time.Time) {
			cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(q.Name),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				t.Error(err)
				return nil, time.Now()
			}
			defer cons.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			lat := make([]float64, 0, n)
			for len(lat) < n && ctx.Err() == nil {
				cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) { lat = append(lat, latencyOf(r.Value)) })
			}
			if len(lat) < n {
				t.Errorf("%s: %d of %d messages consumed in 2 minutes", q.Name, len(lat), n)
			}
			return lat, time.Now()
		},
		serverCPU: func() time.Duration { return 0 },
	}
}

// rabbitBench is Debian's rabbitmq-server on loopback, durable queues
// and persistent messages (what the forwarder's copies are).
func rabbitBench(t *testing.T) benchQueues {
	srv, err := rabbitmqtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	b, err := rabbitmq.New(rabbitmq.Config{URL: srv.URL, Name: "tether-bench"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	conn, err := amqp.Dial(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	channel := func(t *testing.T) *amqp.Channel {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	return benchQueues{
		kind: "RabbitMQ", broker: b,
		fresh: func(t *testing.T, name string) queue.Queue {
			ch := channel(t)
			defer ch.Close()
			if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			return queue.Queue{Name: name}
		},
		publish: func(t *testing.T, q queue.Queue, n, rate int) {
			ch := channel(t)
			defer ch.Close()
			if err := ch.Confirm(false); err != nil {
				t.Fatal(err)
			}
			var dcs []*amqp.DeferredConfirmation
			paced(n, rate, func(int) {
				dc, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", q.Name, false, false, amqp.Publishing{
					Headers: amqp.Table{"x-tether-user": "me"}, DeliveryMode: amqp.Persistent, Body: stamp()})
				if err != nil {
					t.Fatalf("publishing to %s: %v", q.Name, err)
				}
				dcs = append(dcs, dc)
			})
			for _, dc := range dcs {
				if ok, err := dc.WaitContext(t.Context()); err != nil || !ok {
					t.Fatalf("publishing to %s: not confirmed: %v", q.Name, err)
				}
			}
		},
		consume: func(t *testing.T, q queue.Queue, n int) ([]float64, time.Time) {
			ch, err := conn.Channel()
			if err != nil {
				t.Error(err)
				return nil, time.Now()
			}
			defer ch.Close()
			ch.Qos(500, 0, false)
			ds, err := ch.Consume(q.Name, "", false, false, false, false, nil)
			if err != nil {
				t.Error(err)
				return nil, time.Now()
			}
			lat := make([]float64, 0, n)
			timeout := time.After(2 * time.Minute)
			for len(lat) < n {
				select {
				case d := <-ds:
					lat = append(lat, latencyOf(d.Body))
					if len(lat)%100 == 0 || len(lat) == n {
						d.Ack(true)
					}
				case <-timeout:
					t.Errorf("%s: %d of %d messages consumed in 2 minutes", q.Name, len(lat), n)
					return lat, time.Now()
				}
			}
			return lat, time.Now()
		},
		serverCPU: func() time.Duration { return groupCPU(srv.Pid) },
	}
}
