package sniff

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"
	"github.com/tether-dev/tether/internal/netns/netnstest"
)

// capStream records one followed connection.
type capStream struct {
	h           *capHandler
	client, dst netip.AddrPort
	data        bytes.Buffer
	lost, done  bool
}

func (s *capStream) Data(b []byte) { s.h.mu.Lock(); s.data.Write(b); s.h.mu.Unlock() }
func (s *capStream) Lost()         { s.h.mu.Lock(); s.lost = true; s.h.mu.Unlock() }
func (s *capStream) Close()        { s.h.mu.Lock(); s.done = true; s.h.mu.Unlock() }

type capHandler struct {
	mu      sync.Mutex
	streams []*capStream
}

func (h *capHandler) Open(client, dst netip.AddrPort) Stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &capStream{h: h, client: client, dst: dst}
	h.streams = append(h.streams, s)
	return s
}

// wait returns once cond holds (under the handler's lock), or fails.
func (h *capHandler) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		ok := cond()
		h.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// capServe listens on a port in ns and reads every connection to its end.
func capServe(t *testing.T, ns string) uint16 {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// capDial connects to port in ns (marked with mark when not 0).
func capDial(t *testing.T, ns string, port uint16, mark int) net.Conn {
	t.Helper()
	var c net.Conn
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() error {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			if mark == 0 {
				return nil
			}
			var serr error
			rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark) })
			return serr
		}}
		var err error
		c, err = d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSnifferLoopback: the bytes a client sends to a watched port arrive
// whole and in order, then the end; other ports, connections from marked
// sockets and connections opened before the watch are left alone; an
// unwatched port's connections end.
func TestSnifferLoopback(t *testing.T) {
	ns := netnstest.New(t)
	port, other := capServe(t, ns), capServe(t, ns)
	const mark = 0x7e7e0001
	h := &capHandler{}
	s, err := Start(ns, h, mark)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := capDial(t, ns, port, 0)
	defer before.Close()
	if err := s.Watch(port); err != nil {
		t.Fatal(err)
	}
	if !s.Watching(port) || s.Watching(other) {
		t.Fatalf("Watching(%d)=%v Watching(%d)=%v", port, s.Watching(port), other, s.Watching(other))
	}
	before.Write([]byte("opened before the watch"))

	// 1 MiB in writes of varied sizes, then the end.
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i*7 + i>>8)
	}
	c := capDial(t, ns, port, 0)
	for off, step := 0, 1; off < len(want); step = step*3%65521 + 1 {
		end := min(off+step, len(want))
		if _, err := c.Write(want[off:end]); err != nil {
			t.Fatal(err)
		}
		off = end
	}
	c.Close()
	marked := capDial(t, ns, port, mark)
	marked.Write([]byte("from the agent's own socket"))
	marked.Close()
	o := capDial(t, ns, other, 0)
	o.Write([]byte("to another port"))
	o.Close()

	h.wait(t, "the 1 MiB connection's end", func() bool { return len(h.streams) > 0 && h.streams[0].done })
	time.Sleep(100 * time.Millisecond) // the others, were they (wrongly) followed
	h.mu.Lock()
	if len(h.streams) != 1 {
		for _, st := range h.streams {
			t.Errorf("followed %s -> %s (%d bytes)", st.client, st.dst, st.data.Len())
		}
		t.Fatalf("followed %d connections, want only the one opened after the watch, unmarked, to the watched port", len(h.streams))
	}
	st := h.streams[0]
	if st.lost || !bytes.Equal(st.data.Bytes(), want) {
		t.Errorf("lost=%v, got %d bytes (equal to what was sent: %v), want %d", st.lost, st.data.Len(), bytes.Equal(st.data.Bytes(), want), len(want))
	}
	if st.dst.Port() != port || st.client.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("client %s dst %s", st.client, st.dst)
	}
	h.mu.Unlock()

	// A connection left open ends when its port is unwatched.
	open := capDial(t, ns, port, 0)
	defer open.Close()
	open.Write([]byte("hello"))
	h.wait(t, "the open connection's bytes", func() bool { return len(h.streams) == 2 && h.streams[1].data.String() == "hello" })
	if err := s.Unwatch(port); err != nil {
		t.Fatal(err)
	}
	h.wait(t, "the end of the unwatched port's connection", func() bool { return h.streams[1].done })
	st2 := s.Stats()
	if st2.Opened != 2 || st2.Drops != 0 || st2.Truncated != 0 || st2.Malformed != 0 {
		t.Errorf("stats %+v", st2)
	}
}
