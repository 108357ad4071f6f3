package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestReset(t *testing.T) {
	for _, by := range []string{"client", "server"} {
		t.Run(by, func(t *testing.T) {
			c, s, cs, ss := openedStream(t)
			resetter, peer := cs, ss
			if by == "server" {
				resetter, peer = ss, cs
			}
			writeT(t, peer, "ab")
			readT(t, resetter, "a") // "b" waits unread: a reset drops it
			blocked := make(chan error, 1)
			go func() { _, err := peer.Read(make([]byte, 8)); blocked <- err }()
			if err := resetter.Reset(); err != nil {
				t.Fatal(err)
			}
			if err := within(t, 5*time.Second, "the peer's Read", func() error { return <-blocked }); !isReset(err) {
				t.Fatalf("peer's Read after a reset: %v", err)
			}
			if _, err := peer.Write([]byte("y")); !isReset(err) {
				t.Fatalf("peer's Write after a reset: %v", err)
			}
			if err := readErr(t, resetter); !isReset(err) {
				t.Fatalf("Read after Reset: %v", err)
			}
			if _, err := resetter.Write([]byte("z")); !isReset(err) {
				t.Fatalf("Write after Reset: %v", err)
			}
			waitFor(t, "NumStreams 0", func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
		})
	}
}

// A stream reset before anything opened it stays unknown to the peer.
func TestResetUnopened(t *testing.T) {
	c, s, _ := newPair(t, tcpPair, Config{}, Config{})
	st := openT(t, c)
	st.Reset()
	if err := readErr(t, st); !isReset(err) {
		t.Fatalf("Read after Reset: %v", err)
	}
	st.Close()
	writeT(t, openT(t, c), "next")
	if p := acceptT(t, s); p.ID() != st.ID()+2 {
		t.Fatalf("the peer accepted stream %d, a stream reset before it was opened", p.ID())
	}
}

func TestSessionLoss(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			c, s, sconn := newPair(t, p.dial, Config{}, Config{})
			var cst, sst [4]*Stream // with data, with a FIN, blocked, marker
			for i := range cst {
				cst[i] = openT(t, c)
				writeT(t, cst[i], "open")
				sst[i] = acceptT(t, s)
				readT(t, sst[i], "open")
			}
			writeT(t, sst[0], "before the loss")
			writeT(t, sst[1], "last")
			sst[1].CloseWrite()
			writeT(t, sst[3], "m")
			readT(t, cst[3], "m") // frames are in order: the others arrived
			blocked := make(chan error, 1)
			go func() { _, err := cst[2].Read(make([]byte, 8)); blocked <- err }()

			sconn.Close()
			err := within(t, 5*time.Second, "the blocked Read", func() error { return <-blocked })
			if !errors.Is(err, ErrLost) || !isReset(err) {
				t.Fatalf("blocked Read after the loss: %v; want ErrLost (ECONNRESET)", err)
			}
			waitDone(t, c, 5*time.Second)
			if c.Err() == nil {
				t.Error("Err() = nil after the connection was lost")
			}
			readT(t, cst[0], "before the loss")
			if err := readErr(t, cst[0]); !errors.Is(err, ErrLost) {
				t.Errorf("Read past the data received before the loss: %v; want ErrLost", err)
			}
			readT(t, cst[1], "last")
			if n, err := cst[1].Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Errorf("Read of a stream ended before the loss = %d, %v; want io.EOF", n, err)
			}
			if _, err := cst[0].Write([]byte("x")); !errors.Is(err, ErrLost) {
				t.Errorf("Write after the loss: %v", err)
			}
			if _, err := c.Accept(); err == nil {
				t.Error("Accept after the loss succeeded")
			}
			if _, err := c.Open(); err == nil {
				t.Error("Open after the loss succeeded")
			}
			if n := c.NumStreams(); n != 0 {
				t.Errorf("NumStreams = %d after the loss", n)
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	_, _, st, peer := openedStream(t)
	timedRead := func(want time.Duration) {
		t.Helper()
		start := time.Now()
		_, err := st.Read(make([]byte, 8))
		took := time.Since(start)
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline: %v; want os.ErrDeadlineExceeded, a timeout", err)
		}
		if took < want-10*time.Millisecond || took > want+500*time.Millisecond {
			t.Fatalf("Read returned after %v; want about %v", took, want)
		}
	}
	st.SetReadDeadline(time.Now().Add(-time.Second))
	timedRead(0)
	st.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	timedRead(150 * time.Millisecond)

	// Cleared: reads block again, until data comes.
	st.SetReadDeadline(time.Time{})
	got := make(chan string, 1)
	go func() { b := make([]byte, 8); n, _ := st.Read(b); got <- string(b[:n]) }()
	select {
	case s := <-got:
		t.Fatalf("Read with no deadline returned %q before data came", s)
	case <-time.After(200 * time.Millisecond):
	}
	writeT(t, peer, "late")
	if s := within(t, 5*time.Second, "Read", func() string { return <-got }); s != "late" {
		t.Fatalf("read %q", s)
	}

	// A deadline moved into the past wakes a blocked Read.
	done := make(chan error, 1)
	go func() { _, err := st.Read(make([]byte, 8)); done <- err }()
	time.Sleep(20 * time.Millisecond) // (no harm if Read is not blocked yet)
	st.SetDeadline(time.Now())
	if err := within(t, 5*time.Second, "Read", func() error { return <-done }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Read after SetDeadline(now): %v", err)
	}
}

// WriteTo to a socket, ended by the read deadline, counts every byte it
// passed on (some are written to the socket by the receive loop).
func TestWriteToDeadlineCount(t *testing.T) {
	_, _, st, peer := openedStream(t)
	a, b := tcpPair(t)
	st.SetReadDeadline(time.Now().Add(time.Second))
	type res struct {
		n   int64
		err error
	}
	done := make(chan res, 1)
	go func() { n, err := st.WriteTo(a); done <- res{n, err} }()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, part := range []string{"he", "llo"} { // "llo" comes while WriteTo waits
		writeT(t, peer, part)
		got := make([]byte, len(part))
		if _, err := io.ReadFull(b, got); err != nil || string(got) != part {
			t.Fatalf("the socket got %q, %v; want %q", got, err, part)
		}
	}
	r := within(t, 5*time.Second, "WriteTo", func() res { return <-done })
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.n != 5 {
		t.Fatalf("WriteTo = %d, %v; want 5 (the bytes the socket got), os.ErrDeadlineExceeded", r.n, r.err)
	}
}

func TestAcceptBacklog(t *testing.T) {
	c, s, _ := newPair(t, tcpPair, Config{}, Config{AcceptBacklog: 2})
	var sts [5]*Stream
	for i := range sts {
		sts[i] = openT(t, c)
		writeT(t, sts[i], "hi")
	}
	for _, st := range sts[2:] { // opened past the backlog
		if err := readErr(t, st); !isReset(err) {
			t.Fatalf("stream %d past the backlog: Read gave %v; want a reset", st.ID(), err)
		}
	}
	if n := s.NumStreams(); n != 2 {
		t.Errorf("server NumStreams = %d; want 2", n)
	}
	for _, st := range sts[:2] {
		p := acceptT(t, s)
		if p.ID() != st.ID() {
			t.Fatalf("accepted stream %d; want %d", p.ID(), st.ID())
		}
		readT(t, p, "hi")
		writeT(t, p, "ok")
		readT(t, st, "ok")
	}
}

func TestCloseTimeout(t *testing.T) {
	cfg := Config{CloseTimeout: 100 * time.Millisecond}
	t.Run("silent peer", func(t *testing.T) {
		c, s, _ := newPair(t, tcpPair, cfg, Config{})
		st := openT(t, c)
		writeT(t, st, "bye")
		start := time.Now()
		st.CloseWrite()
		peer := acceptT(t, s)
		readT(t, peer, "bye")
		waitFor(t, "the stream to be reset", func() bool { return c.NumStreams() == 0 })
		if took := time.Since(start); took < 100*time.Millisecond {
			t.Fatalf("reset after %v, before CloseTimeout", took)
		}
		if err := readErr(t, peer); !isReset(err) {
			t.Fatalf("the peer's Read: %v; want a reset", err)
		}
	})
	t.Run("talking peer", func(t *testing.T) {
		c, s, _ := newPair(t, tcpPair, cfg, Config{})
		st := openT(t, c)
		writeT(t, st, "bye")
		st.CloseWrite()
		peer := acceptT(t, s)
		readT(t, peer, "bye")
		for range 15 { // 450 ms: over four CloseTimeouts
			time.Sleep(30 * time.Millisecond)
			writeT(t, peer, "tick")
			readT(t, st, "tick")
		}
		if n := c.NumStreams(); n != 1 {
			t.Fatalf("NumStreams = %d while the peer was sending", n)
		}
		waitFor(t, "the stream to be reset once quiet", func() bool { return c.NumStreams() == 0 })
	})
	t.Run("peer held back by a slow reader", func(t *testing.T) {
		// The peer sends nothing while this side's reader leaves it no
		// window; a reader that still reads keeps the stream.
		c, s, _ := newPair(t, tcpPair, cfg, Config{})
		st := openT(t, c)
		st.CloseWrite()
		peer := acceptT(t, s)
		want := randomBytes(1<<20, 7)
		go peer.Write(want)
		var got []byte
		buf := make([]byte, 64<<10)
		for len(got) < len(want) {
			time.Sleep(40 * time.Millisecond)
			st.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := st.Read(buf)
			if err != nil {
				t.Fatalf("Read after %d bytes: %v", len(got), err)
			}
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("the bytes read are not those sent")
		}
	})
}

func TestWriteAfterClose(t *testing.T) {
	for _, name := range []string{"CloseWrite", "Close"} {
		t.Run(name, func(t *testing.T) {
			c, s, _ := newPair(t, tcpPair, Config{}, Config{})
			st := openT(t, c)
			writeT(t, st, "x")
			if name == "Close" {
				st.Close()
			} else {
				st.CloseWrite()
			}
			if n, err := st.Write([]byte("y")); n != 0 || !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write after %s = %d, %v; want net.ErrClosed", name, n, err)
			}
			p := acceptT(t, s)
			if b, err := io.ReadAll(bounded(p)); string(b) != "x" || err != nil {
				t.Fatalf("peer read %q, %v; want \"x\" then EOF", b, err)
			}
		})
	}
}
