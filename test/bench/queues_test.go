package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/queue"
	"github.com/tether-dev/tether/test/bench/report"
)

// What the queue-splitting benchmark sends: at a steady rate for the
// latencies, and a backlog for the throughput.
const (
	queueRate    = 1000 // messages per second
	queueLatN    = 3000
	queueBacklog = 20000
	queueMsgSize = 256
)

// benchQueues is one broker for the queue-splitting benchmark: the
// queue.Broker the forwarder uses, and a publisher and consumer of the
// benchmark's own, with the broker's client library, as the app would.
type benchQueues struct {
	kind   string
	broker queue.Broker
	// fresh makes a source queue of that name (and, for Kafka, group).
	fresh func(t *testing.T, name string) queue.Queue
	// publish sends n messages (each carrying its send time) to q with
	// x-tether-user: me, at rate per second (0: as fast as it can).
	publish func(t *testing.T, q queue.Queue, n, rate int)
	// consume reads n messages from q as they come, and returns each
	// one's latency from its send (µs) and when the last came.
	consume func(t *testing.T, q queue.Queue, n int) ([]float64, time.Time)
	// serverCPU is the CPU time of the broker's own process (0 when it
	// runs in this one).
	serverCPU func() time.Duration
}

// stamp is a message value: its send time, padded to queueMsgSize.
func stamp() []byte {
	b := make([]byte, queueMsgSize)
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	return b
}

// latencyOf is how long ago value was stamped, in µs.
func latencyOf(value []byte) float64 {
	if len(value) < 8 {
		return 0
	}
	return float64(time.Now().UnixNano()-int64(binary.BigEndian.Uint64(value))) / 1000
}

// paced calls send n times at rate per second (0: at once).
func paced(n, rate int, send func(i int)) {
	start := time.Now()
	for i := range n {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		send(i)
	}
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// groupCPU is the CPU time of the processes of process group pgid.
func groupCPU(pgid int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// runQueueBench measures, for one broker, a consumer reading a queue
// directly (the baseline: no split) against the same consumer reading a
// session's queue that the forwarder fills from the source (a split):
// latency at queueRate, and the throughput and CPU of a backlog.
func runQueueBench(t *testing.T, bq benchQueues) []report.Row {
	ctx := t.Context()
	run := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)
	n := 0
	next := func(what string) queue.Queue { n++; return bq.fresh(t, fmt.Sprintf("%s-%s-%d", run, what, n)) }
	// split starts a forwarder from src to a session queue that takes
	// x-tether-user: me, and returns that queue.
	split := func(src queue.Queue) (queue.Queue, func()) {
		dest := queue.Queue{Name: src.Name + "-tether-me"}
		fb := queue.Queue{Name: src.Name + "-tether-fallback"}
		for _, q := range []queue.Queue{dest, fb} {
			if err := bq.broker.Create(ctx, q, src); err != nil {
				t.Fatal(err)
			}
		}
		f, _ := queue.ParseFilter(map[string]string{"x-tether-user": "^me$"})
		fw := &queue.Forwarder{Broker: bq.broker, Source: src, Fallback: fb}
		fw.SetRoutes([]queue.Route{{Session: "me", Filter: f, Dest: dest}})
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- fw.Run(fctx) }()
		return dest, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("forwarder: %v", err)
			}
		}
	}
	// latency publishes queueLatN at queueRate to src while reading from
	// read (src itself, or the split's queue).
	latency := func(src, read queue.Queue) []float64 {
		var lat []float64
		var wg sync.WaitGroup
		wg.Go(func() { lat, _ = bq.consume(t, read, queueLatN) })
		time.Sleep(500 * time.Millisecond) // the consumer has joined
		bq.publish(t, src, queueLatN, queueRate)
		wg.Wait()
		return lat
	}
	// backlog reads queueBacklog messages waiting on src through read:
	// messages per second, and CPU µs per message (this process and the
	// broker's).
	backlog := func(src queue.Queue, start func() (queue.Queue, func())) (rate, cpu float64) {
		bq.publish(t, src, queueBacklog, 0)
		c0, s0 := selfCPU(), bq.serverCPU()
		t0 := time.Now()
		read, stop := start()
		_, last := bq.consume(t, read, queueBacklog)
		stop()
		used := selfCPU() - c0 + bq.serverCPU() - s0
		return float64(queueBacklog) / last.Sub(t0).Seconds(), float64(used.Microseconds()) / queueBacklog
	}
	direct := func(src queue.Queue) func() (queue.Queue, func()) {
		return func() (queue.Queue, func()) { return src, func() {} }
	}
	var dLat, sLat []float64
	for range 2 { // alternated, so that drift hits both
		src := next("lat")
		dLat = append(dLat, latency(src, src)...)
		src = next("lat")
		dest, stop := split(src)
		sLat = append(sLat, latency(src, dest)...)
		stop()
	}
	var dRate, sRate, dCPU, sCPU []float64
	for range 3 {
		src := next("backlog")
		r, c := backlog(src, direct(src))
		dRate, dCPU = append(dRate, r), append(dCPU, c)
		src = next("backlog")
		r, c = backlog(src, func() (queue.Queue, func()) { return split(src) })
		sRate, sCPU = append(sRate, r), append(sCPU, c)
	}
	ms := func(xs []float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = x / 1000
		}
		return out
	}
	what := fmt.Sprintf("%s, %d messages of %d B at %d/s", bq.kind, 2*queueLatN, queueMsgSize, queueRate)
	lat := func(stat string) report.Row {
		return report.Row{Name: bq.kind + ": publish → consume latency " + stat, Stat: stat, Unit: "ms",
			Baseline: report.Samples("the consumer reads the queue", what, ms(dLat)),
			Tether:   report.Samples("split: forwarder → session queue → consumer", what, ms(sLat)),
			Summary:  stat == "p50"}
	}
	bwhat := fmt.Sprintf("%s, a backlog of %d messages of %d B, 3 rounds", bq.kind, queueBacklog, queueMsgSize)
	return []report.Row{lat("p50"), lat("p99"),
		{Name: bq.kind + ": backlog consumed, messages/s", Stat: "median", Unit: "msg/s", HigherIsBetter: true,
			Baseline: report.Runs("the consumer reads the queue", bwhat, dRate),
			Tether:   report.Runs("split: forwarder → session queue → consumer", bwhat, sRate), Summary: true},
		{Name: bq.kind + ": CPU per message (clients, forwarder and broker)", Stat: "median", Unit: "µs",
			Baseline: report.Runs("the consumer reads the queue", bwhat, dCPU),
			Tether:   report.Runs("split: forwarder → session queue → consumer", bwhat, sCPU)},
	}
}

// TestQueueSplitCost: what splitting a queue costs the messages' way to
// a consumer, on Kafka (franz-go's kfake, in this process) and RabbitMQ
// (Debian's rabbitmq-server, on loopback).
func TestQueueSplitCost(t *testing.T) {
	benchEnabled(t)
	var rows []report.Row
	rows = append(rows, runQueueBench(t, kafkaBench(t))...)
	rows = append(rows, runQueueBench(t, rabbitBench(t))...)
	writeResults(t, report.File{
		Name:  "queues",
		Title: "queue splitting: a consumer reading its queue directly vs through the operator's forwarder",
		Notes: []string{
			"the forwarder is internal/queue's, with the brokers' tether implementations (what tether-operator runs); the consumer uses the broker's own client library, the same on both sides",
			"latency: each message carries its send time; 2 alternated rounds each side; backlog: 3 alternated rounds",
			"CPU: this process (publisher, consumer, forwarder; Kafka's kfake broker too) plus, for RabbitMQ, the rabbitmq-server's processes",
		},
		Rows: rows,
	})
}
