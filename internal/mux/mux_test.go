package mux

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	_ io.WriterTo   = (*Stream)(nil) // io.Copy(conn, stream) takes WriteTo
	_ io.ReaderFrom = (*Stream)(nil) // io.Copy(stream, conn) takes ReadFrom
)

type pairFunc func(t *testing.T) (net.Conn, net.Conn)

var pairs = []struct {
	name string
	dial pairFunc
}{{"tcp", tcpPair}, {"pipe", pipePair}}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// openedStream is a pair of sessions over TCP and a stream between them,
// opened by an "x" that the peer has read.
func openedStream(t *testing.T) (c, s *Session, st, peer *Stream) {
	t.Helper()
	c, s, _ = newPair(t, tcpPair, Config{}, Config{})
	st = openT(t, c)
	writeT(t, st, "x")
	peer = acceptT(t, s)
	readT(t, peer, "x")
	return c, s, st, peer
}

func pipePair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// newPair starts a client and a server session on a fresh connection;
// it also returns the server's connection.
func newPair(t *testing.T, dial pairFunc, ccfg, scfg Config) (c, s *Session, sconn net.Conn) {
	t.Helper()
	c1, c2 := dial(t)
	c, s = Client(c1, ccfg), Server(c2, scfg)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s, c2
}

func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not done within %v", what, d)
		panic("unreachable")
	}
}

func acceptT(t *testing.T, s *Session) *Stream {
	t.Helper()
	type res struct {
		st  *Stream
		err error
	}
	r := within(t, 5*time.Second, "Accept", func() res { st, err := s.Accept(); return res{st, err} })
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	return r.st
}

func openT(t *testing.T, s *Session) *Stream {
	t.Helper()
	st, err := s.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

func writeT(t *testing.T, st *Stream, s string) {
	t.Helper()
	if _, err := st.Write([]byte(s)); err != nil {
		t.Fatalf("Write(%q): %v", s, err)
	}
}

// readT reads exactly len(want) bytes and checks them.
func readT(t *testing.T, st *Stream, want string) {
	t.Helper()
	b := make([]byte, len(want))
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer st.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(st, b); err != nil || string(b) != want {
		t.Fatalf("read %q, %v; want %q", b, err, want)
	}
}

// readErr reads once (bounded) and returns the error, failing on data.
func readErr(t *testing.T, st *Stream) error {
	t.Helper()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer st.SetReadDeadline(time.Time{})
	n, err := st.Read(make([]byte, 64))
	if n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %d, %v; want it to fail", n, err)
	}
	return err
}

// bounded sets a read deadline on st, so that a test that fails does
// not hang.
func bounded(st *Stream) *Stream {
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func waitDone(t *testing.T, s *Session, d time.Duration) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(d):
		t.Fatalf("the session still lives after %v", d)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// onlyReader hides a Stream's WriteTo from io.Copy.
type onlyReader struct{ io.Reader }

type halfConn interface {
	io.ReadWriter
	CloseWrite() error
}

// exchange sends send on c (then half-closes it) while it reads c to its
// end, and checks it read want.
func exchange(t *testing.T, c halfConn, send, want []byte) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		var err error
		for b, k := send, 1000; len(b) > 0 && err == nil; k = k*7%99991 + 1 {
			var n int
			n, err = c.Write(b[:min(k, len(b))])
			b = b[n:]
		}
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.CopyBuffer(h, onlyReader{c}, make([]byte, 32<<10))
	if err != nil {
		t.Errorf("reading: %v after %d bytes", err, n)
	} else if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Errorf("read %d bytes that differ from the %d sent", n, len(want))
	}
	if err := <-werr; err != nil {
		t.Errorf("writing: %v", err)
	}
}

// splice joins st and c with io.Copy both ways (WriteTo and ReadFrom).
func splice(t *testing.T, st *Stream, c *net.TCPConn) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := io.Copy(st, c); err != nil {
			t.Errorf("io.Copy(stream, conn): %v", err)
		}
		st.CloseWrite()
	})
	wg.Go(func() {
		if _, err := io.Copy(c, st); err != nil {
			t.Errorf("io.Copy(conn, stream): %v", err)
		}
		c.CloseWrite()
	})
	wg.Wait()
}

func TestManyStreams(t *testing.T) {
	const n = 50
	src := randomBytes(4<<20, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	part := func() []byte { off, l := rng.IntN(1<<20), 1<<20+rng.IntN(2<<20); return src[off : off+l] }
	up, down := make([][]byte, n), make([][]byte, n)
	for i := range n {
		up[i], down[i] = part(), part()
	}
	for _, viaCopy := range []bool{false, true} {
		t.Run(map[bool]string{false: "read-write", true: "io.Copy"}[viaCopy], func(t *testing.T) {
			c, s, _ := newPair(t, tcpPair, Config{}, Config{})
			// run does one end's exchange: on the stream itself, or
			// on a TCP conn joined to it with io.Copy.
			var conns [2 * n][2]net.Conn // for the client's streams, then the server's
			for k := range conns {
				if viaCopy {
					conns[k][0], conns[k][1] = tcpPair(t)
				}
			}
			run := func(k int, st *Stream, send, want []byte) {
				if !viaCopy {
					exchange(t, st, send, want)
					return
				}
				a, b := conns[k][0], conns[k][1]
				var wg sync.WaitGroup
				wg.Go(func() { splice(t, st, b.(*net.TCPConn)) })
				exchange(t, a.(*net.TCPConn), send, want)
				wg.Wait()
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for range n {
					st, err := s.Accept()
					if err != nil {
						t.Errorf("Accept: %v", err)
						return
					}
					i := int(st.ID()-1) / 2 // client ids: 1, 3, 5...
					wg.Go(func() { run(n+i, st, down[i], up[i]) })
				}
			})
			for i := range n {
				st := openT(t, c)
				wg.Go(func() { run(i, st, up[i], down[i]) })
			}
			within(t, time.Minute, "the exchanges", func() bool { wg.Wait(); return true })
			waitFor(t, "streams to end", func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
		})
	}
}

func TestFlowControl(t *testing.T) {
	c, s, _ := newPair(t, tcpPair, Config{}, Config{})
	data := randomBytes(1<<20, 2)
	slow := openT(t, c)
	slow.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := slow.Write(data)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n > initialWindow || n < initialWindow-maxFrame {
		t.Fatalf("Write to a stream not read = %d, %v; want about %d, a deadline error", n, err, initialWindow)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%v is not a net.Error that timed out", err)
	}
	slowPeer := acceptT(t, s)
	slow.SetWriteDeadline(time.Time{})
	blocked := make(chan error, 1)
	go func() { _, err := slow.Write(data[n:]); blocked <- err }()

	// Meanwhile another stream moves 4 MiB each way (past its own window).
	fast := openT(t, c)
	writeT(t, fast, "x")
	fastPeer := acceptT(t, s)
	readT(t, fastPeer, "x")
	big := randomBytes(4<<20, 3)
	var wg sync.WaitGroup
	wg.Go(func() { exchange(t, fast, big, big) })
	wg.Go(func() { // echo
		if _, err := io.Copy(fastPeer, fastPeer); err != nil {
			t.Errorf("echo: %v", err)
		}
		fastPeer.CloseWrite()
	})
	within(t, time.Minute, "the other stream's exchange", func() bool { wg.Wait(); return true })
	select {
	case err := <-blocked:
		t.Fatalf("the Write to the stream not read returned (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}

	got := make([]byte, len(data))
	if _, err := io.ReadFull(bounded(slowPeer), got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("slow reader: %v, or the bytes differ", err)
	}
	if err := within(t, 5*time.Second, "the blocked Write", func() error { return <-blocked }); err != nil {
		t.Fatalf("the blocked Write: %v", err)
	}
}

func TestHalfClose(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			c, s, _ := newPair(t, p.dial, Config{}, Config{})
			cs := openT(t, c)
			writeT(t, cs, "question")
			if err := cs.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			ss := acceptT(t, s)
			b, err := io.ReadAll(bounded(ss))
			if err != nil || string(b) != "question" {
				t.Fatalf("server read %q, %v", b, err)
			}
			writeT(t, ss, "answer")
			if err := ss.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err = io.ReadAll(bounded(cs)); err != nil || string(b) != "answer" {
				t.Fatalf("client read %q, %v", b, err)
			}
			if n, err := cs.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("Read after the end = %d, %v; want io.EOF", n, err)
			}
			waitFor(t, "NumStreams 0", func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
		})
	}
}

func TestLazyOpen(t *testing.T) {
	c, s, _ := newPair(t, tcpPair, Config{}, Config{})
	accepted := make(chan *Stream, 3)
	go func() {
		for st, err := s.Accept(); err == nil; st, err = s.Accept() {
			accepted <- st
		}
	}()
	next := func(what string) *Stream {
		t.Helper()
		return within(t, 5*time.Second, what, func() *Stream { return <-accepted })
	}
	st := openT(t, c)
	select {
	case <-accepted:
		t.Fatal("Open alone opened the stream at the peer")
	case <-time.After(200 * time.Millisecond):
	}
	writeT(t, st, "w")
	if p := next("Accept after a Write"); p.ID() != st.ID() {
		t.Fatalf("accepted stream %d, want %d", p.ID(), st.ID())
	}

	st2 := openT(t, c)
	read := make(chan string, 1)
	go func() { b := make([]byte, 1); st2.Read(b); read <- string(b) }()
	p := next("Accept after a Read")
	if p.ID() != st2.ID() {
		t.Fatalf("accepted stream %d, want %d", p.ID(), st2.ID())
	}
	writeT(t, p, "r")
	if got := within(t, 5*time.Second, "Read", func() string { return <-read }); got != "r" {
		t.Fatalf("read %q", got)
	}

	st3 := openT(t, c)
	st3.Close()
	if b, err := io.ReadAll(bounded(next("Accept after a Close"))); len(b) != 0 || err != nil {
		t.Fatalf("a stream only closed reads %q, %v", b, err)
	}
}
