package kafka

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tether-dev/tether/internal/queue"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		brokers []string
		ok      bool
	}{
		{"none", nil, false},
		{"empty", []string{""}, false},
		{"blank among others", []string{"a:9092", "  "}, false},
		{"one", []string{"localhost:9092"}, true},
		{"trimmed", []string{" a:9092 ", "b"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(Config{Brokers: tc.brokers})
			if (err == nil) != tc.ok {
				t.Fatalf("New(%q) error %v, want ok %v", tc.brokers, err, tc.ok)
			}
			if b != nil {
				_ = b.Close()
			}
		})
	}
}

func TestCheck(t *testing.T) {
	b := newBroker(t, cluster(t, 2, "orders"))
	if err := b.Check(ctxFor(t, 10*time.Second), queue.Queue{Name: "orders", Group: "app"}); err != nil {
		t.Fatalf("Check of an existing topic: %v", err)
	}
	err := b.Check(ctxFor(t, 10*time.Second), queue.Queue{Name: "ordrs", Group: "app"})
	var qe *queue.Error
	if !errors.As(err, &qe) || !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Check of a missing topic: %v, want a *queue.Error wrapping ErrNotFound", err)
	}
	if qe.Kind != queue.KindKafka || qe.Broker == "" || !strings.Contains(err.Error(), "ordrs") || !strings.Contains(qe.Hint, "ordrs") {
		t.Errorf("Check of a missing topic: %#v: want kind kafka, the broker, and the topic in the message and hint", qe)
	}
}

// An unreachable broker, one refusing connections or one that never
// answers, fails Check within the context's deadline, with a hint about
// the brokers.
func TestCheckUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(t *testing.T) string
	}{
		{"closed port", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln.Close()
			return ln.Addr().String()
		}},
		{"silent", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { conn.Close() }) // reads nothing, answers nothing
				}
			}()
			return ln.Addr().String()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.listen(t)
			b, err := New(Config{Brokers: []string{addr}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()

			const d = 2 * time.Second
			start := time.Now()
			err = b.Check(ctxFor(t, d), queue.Queue{Name: "orders", Group: "app"})
			took := time.Since(start)
			if took > d+time.Second {
				t.Errorf("Check took %v with a %v deadline", took, d)
			}
			var qe *queue.Error
			if !errors.As(err, &qe) {
				t.Fatalf("Check of an unreachable broker: %v, want a *queue.Error", err)
			}
			if qe.Kind != queue.KindKafka || qe.Broker != addr || !strings.Contains(qe.Hint, addr) || !strings.Contains(qe.Hint, "reach") {
				t.Errorf("Check of an unreachable broker: %v: want the broker and a hint to check it", err)
			}
			t.Logf("%v (after %v)", err, took.Round(time.Millisecond))
		})
	}
}

func partitionCount(t *testing.T, b *Broker, topic string) int {
	t.Helper()
	ps, err := b.partitions(ctxFor(t, 5*time.Second), "test", topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	return len(ps)
}

func TestCreateDelete(t *testing.T) {
	c := cluster(t, 3, "orders")
	b := newBroker(t, c)
	adm := admin(t, c)
	tmp := queue.Queue{Name: "orders-s1", Group: "app-s1"}
	src := queue.Queue{Name: "orders", Group: "app"}
	for i := range 2 { // again: it exists
		if err := b.Create(ctxFor(t, 10*time.Second), tmp, src); err != nil {
			t.Fatalf("Create #%d: %v", i+1, err)
		}
	}
	if n := partitionCount(t, b, tmp.Name); n != 3 {
		t.Errorf("created %d partitions, want 3 like %s", n, src.Name)
	}
	if err := b.Check(ctxFor(t, 5*time.Second), tmp); err != nil {
		t.Errorf("Check after Create: %v", err)
	}
	if err := b.Create(ctxFor(t, 5*time.Second), queue.Queue{Name: "x"}, queue.Queue{Name: "nope"}); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Create like a missing topic: %v, want ErrNotFound", err)
	}

	// Give the group commits, so that it exists.
	send(t, b, tmp, numbered(3, 3))
	r := open(t, b, tmp)
	if err := r.Ack(ctxFor(t, 5*time.Second), receiveAll(t, r, 3)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if gs, err := adm.DescribeGroups(ctxFor(t, 5*time.Second), tmp.Group); err != nil || gs[tmp.Group].Err != nil {
		t.Fatalf("group %s before Delete: %v %v", tmp.Group, err, gs[tmp.Group].Err)
	}

	if err := b.Delete(ctxFor(t, 10*time.Second), tmp); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := b.Check(ctxFor(t, 5*time.Second), tmp); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Check after Delete: %v, want ErrNotFound", err)
	}
	td, err := adm.ListTopics(ctxFor(t, 5*time.Second), tmp.Name)
	if err != nil || !errors.Is(td[tmp.Name].Err, kerr.UnknownTopicOrPartition) {
		t.Errorf("topic after Delete: %v %+v", err, td[tmp.Name])
	}
	gs, err := adm.DescribeGroups(ctxFor(t, 5*time.Second), tmp.Group)
	if err != nil || !errors.Is(gs[tmp.Group].Err, kerr.GroupIDNotFound) {
		t.Errorf("group after Delete: %v %+v, want GROUP_ID_NOT_FOUND", err, gs[tmp.Group])
	}
	for _, q := range []queue.Queue{tmp, {Name: "never"}, {Name: "never", Group: "never"}} {
		if err := b.Delete(ctxFor(t, 10*time.Second), q); err != nil {
			t.Errorf("Delete of missing %s: %v", q, err)
		}
	}

	// Made again, it is empty and takes messages.
	if err := b.Create(ctxFor(t, 10*time.Second), tmp, src); err != nil {
		t.Fatal(err)
	}
	if n := lag(t, b, tmp); n != 0 {
		t.Errorf("Lag of the topic made again = %d", n)
	}
	send(t, b, tmp, numbered(2, 3))
	receiveAll(t, open(t, b, tmp), 2)
}

// Idle is false while a group consumer is a member of the group, true
// once it has left; Ack meanwhile fails saying the group is in use.
func TestIdleAndAckWithMembers(t *testing.T) {
	for _, tc := range []struct {
		name, groupType string
		opts            []kgo.Opt
	}{
		{"classic", "classic", nil},
		{"consumer protocol", "consumer", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(t, 2, "orders")
			b := newBroker(t, c)
			q := queue.Queue{Name: "orders", Group: "app"}
			send(t, b, q, numbered(4, 2))
			idle := func() bool {
				ok, err := b.Idle(ctxFor(t, 5*time.Second), q)
				if err != nil {
					t.Fatalf("Idle: %v", err)
				}
				return ok
			}
			if !idle() {
				t.Fatal("Idle before any consumer: false")
			}
			if ok, err := b.Idle(ctxFor(t, 5*time.Second), queue.Queue{Name: "orders"}); !ok || err != nil {
				t.Errorf("Idle without a group: %v %v", ok, err)
			}
			r := open(t, b, q)
			msgs := receiveAll(t, r, 4)

			app, err := kgo.NewClient(append([]kgo.Opt{
				kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup(q.Group), kgo.ConsumeTopics(q.Name),
				kgo.FetchMaxWait(200 * time.Millisecond), kgo.DisableAutoCommit(),
			}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if app.PollFetches(t.Context()).IsClientClosed() {
						return
					}
				}
			}()
			eventually(t, "the app's consumer is a member", func() bool { return !idle() })
			if gs, err := admin(t, c).ListGroups(ctxFor(t, 5*time.Second)); err != nil || gs[q.Group].GroupType != tc.groupType {
				t.Fatalf("group %s: %+v %v, want type %s", q.Group, gs[q.Group], err, tc.groupType)
			}

			err = r.Ack(ctxFor(t, 5*time.Second), msgs)
			var qe *queue.Error
			if !errors.Is(err, ErrGroupActive) || !errors.As(err, &qe) || !strings.Contains(qe.Hint, q.Group) {
				t.Errorf("Ack while the group has a member: %v, want ErrGroupActive with a hint", err)
			}

			app.Close() // leaves the group
			<-done
			eventually(t, "the app's consumer has left", idle)
			if err := r.Ack(ctxFor(t, 5*time.Second), msgs); err != nil {
				t.Errorf("Ack once the group is empty: %v", err)
			}
			if n := lag(t, b, q); n != 0 {
				t.Errorf("Lag after Ack = %d", n)
			}
		})
	}
}
