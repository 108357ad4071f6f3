package rabbitmq

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/queue"
)

// freezer is a loopback TCP proxy to addr that can stop passing the
// server's bytes to its clients: a broker that no longer answers.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{}
}

func newFreezer(t *testing.T, addr string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, thaw: make(chan struct{})}
	t.Cleanup(func() { ln.Close(); f.setFrozen(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { f.copyUnlessFrozen(c, s); c.Close() }()
		}
	}()
	return f
}

func (f *freezer) setFrozen(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen && !v {
		close(f.thaw)
		f.thaw = make(chan struct{})
	}
	f.frozen = v
}

func (f *freezer) copyUnlessFrozen(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for {
			f.mu.Lock()
			frozen, thaw := f.frozen, f.thaw
			f.mu.Unlock()
			if !frozen {
				break
			}
			<-thaw
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestCloseWithoutAnswer: a broker that stops answering cannot wedge the
// forwarder: closing a receiver returns within its bound (the connection
// is dropped), and the broker dials again for the next call.
func TestCloseWithoutAnswer(t *testing.T) {
	u, err := url.Parse(rabbit(t))
	if err != nil {
		t.Fatal(err)
	}
	fr := newFreezer(t, u.Host)
	u.Host = fr.ln.Addr().String()
	b, err := New(Config{URL: u.String(), Name: "tether-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q := queue.Queue{Name: declare(t, direct(t), "q")}
	ctx := ctxFor(t, time.Minute)
	r, err := b.Open(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	fr.setFrozen(true)
	start := time.Now()
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
		t.Logf("Close returned after %v without an answer (bound %v)", time.Since(start).Round(time.Millisecond), closeTimeout)
	case <-time.After(3 * closeTimeout):
		t.Fatalf("Close still waits %v after the broker stopped answering", 3*closeTimeout)
	}
	fr.setFrozen(false)
	if _, err := b.Lag(ctx, q); err != nil {
		t.Fatalf("after the dropped connection, Lag = %v, want it to dial again", err)
	}
}
