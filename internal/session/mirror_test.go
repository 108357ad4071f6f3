package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/protocol"
)

// TestMirrorBehind: a mirroring session that cannot keep up never slows
// the deployed app: requests that arrive while its copy is behind are
// left out whole (never a request cut short but the last of a burst),
// counted, and the session is told how many; once it has caught up, the
// next request on the same connection is copied again.
func TestMirrorBehind(t *testing.T) {
	r := newIncomingRig(t)
	const size = 1 << 20
	var served atomic.Int32 // whole copies the local app got
	gate := make(chan struct{})
	local, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		<-gate // stuck until the burst is over
		if b, err := io.ReadAll(req.Body); err == nil && (len(b) == size || req.Method == "GET") {
			served.Add(1)
		}
	})}
	go srv.Serve(local)
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	t.Cleanup(func() { open(); srv.Close() })
	conn, err := net.Dial("tcp", r.agentAdr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := &syncWriter{w: &bytes.Buffer{}}
	s, err := New(context.Background(), conn, Options{Config: withLoopback(&config.Config{}), Messages: msgs, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Listening(context.Background(), local.Addr().(*net.TCPAddr).AddrPort(), r.app.Port()); err != nil {
		t.Fatal(err)
	}

	c := r.client(t) // one keep-alive connection
	body := bytes.Repeat([]byte("m"), size)
	const burst = 100
	start := time.Now()
	for i := range burst {
		resp, err := c.Post(fmt.Sprintf("http://app/p%d", i), "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %d: %s", i, resp.Status)
		}
	}
	t.Logf("the app answered %d POSTs of %d KiB in %s with its mirror stuck", burst, size>>10, time.Since(start).Round(time.Millisecond))
	open()

	// The session is told; the copies it got and the ones left out are
	// the burst.
	total := regexp.MustCompile(`mirror: \d+ requests to port \d+ were not copied to you in the last \S+ \((\d+) since you subscribed\)`)
	var dropped int
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := total.FindAllStringSubmatch(msgs.String(), -1); m != nil {
			dropped, _ = strconv.Atoi(m[len(m)-1][1])
			if dropped+int(served.Load()) == burst {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dropped == 0 || int(served.Load()) == 0 || dropped+int(served.Load()) != burst {
		t.Fatalf("of %d mirrored POSTs the local app got %d whole and the session was told %d were left out (want both > 0, adding up)\nmessages:\n%s",
			burst, served.Load(), dropped, msgs.String())
	}
	t.Logf("copied whole %d, left out %d", served.Load(), dropped)
	// Caught up: the next request is copied again.
	before := served.Load()
	if got := get(t, c, "/after", ""); got == "" {
		t.Fatal("no answer")
	}
	for deadline := time.Now().Add(5 * time.Second); served.Load() == before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if served.Load() != before+1 {
		t.Errorf("after catching up, a request was not copied (local app got %d, before %d)", served.Load(), before)
	}
}

// TestMirrorRate: incoming.mirror_rate bounds the copies a second; the
// requests over it are answered by the app as ever, left out of the
// copies, counted and told to the session, for that reason; 0 copies
// every request.
func TestMirrorRate(t *testing.T) {
	if protocol.DefaultMirrorRate != config.DefaultMirrorRate {
		t.Fatalf("the agent's default mirror rate %d is not the config's %d", protocol.DefaultMirrorRate, config.DefaultMirrorRate)
	}
	for _, tc := range []struct {
		name string
		rate int
	}{{"bounded", 20}, {"unbounded", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newIncomingRig(t)
			var copied atomic.Int32
			local, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { copied.Add(1) })}
			go srv.Serve(local)
			t.Cleanup(func() { srv.Close() })
			conn, err := net.Dial("tcp", r.agentAdr)
			if err != nil {
				t.Fatal(err)
			}
			msgs := &syncWriter{w: &bytes.Buffer{}}
			cfg := withLoopback(&config.Config{})
			cfg.Incoming.MirrorRate = &tc.rate
			s, err := New(context.Background(), conn, Options{Config: cfg, Messages: msgs, Quiet: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Listening(context.Background(), local.Addr().(*net.TCPAddr).AddrPort(), r.app.Port()); err != nil {
				t.Fatal(err)
			}
			c := r.client(t)
			const sent = 200
			start := time.Now()
			for i := range sent {
				if got := get(t, c, fmt.Sprintf("/r%d", i), ""); got == "" {
					t.Fatalf("GET %d: no answer from the app", i)
				}
			}
			elapsed := time.Since(start)
			if tc.rate == 0 {
				for deadline := time.Now().Add(10 * time.Second); copied.Load() < sent && time.Now().Before(deadline); {
					time.Sleep(20 * time.Millisecond)
				}
				if copied.Load() != sent {
					t.Fatalf("with no bound the local app got %d copies of %d requests\n%s", copied.Load(), sent, msgs.String())
				}
				return
			}
			// The bucket holds a tenth of a second's copies (at least one)
			// and fills at the rate.
			most := int(max(1, float64(tc.rate)/10) + elapsed.Seconds()*float64(tc.rate) + 1)
			total := regexp.MustCompile(`\((\d+) since you subscribed\): (\d+) over incoming.mirror_rate \(20 per second`)
			var left int
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if m := total.FindAllStringSubmatch(msgs.String(), -1); m != nil {
					left, _ = strconv.Atoi(m[len(m)-1][1])
					if left+int(copied.Load()) == sent {
						break
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("%d requests in %s: %d copied (at most %d allowed), %d left out", sent, elapsed.Round(time.Millisecond), copied.Load(), most, left)
			if n := int(copied.Load()); n == 0 || n > most || left+n != sent {
				t.Fatalf("rate %d/s over %s: the local app got %d copies (want 1..%d) and the session was told %d were left out (want the rest of %d)\nmessages:\n%s",
					tc.rate, elapsed, n, most, left, sent, msgs.String())
			}
		})
	}
}
