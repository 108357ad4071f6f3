package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawHeader lays out a header by hand, so that parseHeader is checked
// against the documented layout and not only against header.put.
func rawHeader(version, typ byte, flags uint16, stream, length uint32) []byte {
	return []byte{
		version, typ,
		byte(flags >> 8), byte(flags),
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream),
		byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length),
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		want    header
		wantErr string // a substring of the ProtocolError's reason; "" for none
	}{
		{"data SYN", rawHeader('T', typeData, flagSYN, 1, 10), header{typeData, flagSYN, 1, 10}, ""},
		{"data FIN empty", rawHeader('T', typeData, flagFIN, 2, 0), header{typeData, flagFIN, 2, 0}, ""},
		{"data RST", rawHeader('T', typeData, flagRST, 7, 0), header{typeData, flagRST, 7, 0}, ""},
		{"data SYN|FIN", rawHeader('T', typeData, flagSYN|flagFIN, 9, 3), header{typeData, flagSYN | flagFIN, 9, 3}, ""},
		{"data of maxFrame", rawHeader('T', typeData, 0, 1<<31-1, maxFrame), header{typeData, 0, 1<<31 - 1, maxFrame}, ""},
		{"window", rawHeader('T', typeWindow, 0, 3, 1<<20), header{typeWindow, 0, 3, 1 << 20}, ""},
		{"window of max increment", rawHeader('T', typeWindow, 0, 3, 1<<32-1), header{typeWindow, 0, 3, 1<<32 - 1}, ""},
		{"ping", rawHeader('T', typePing, 0, 0, 0xdeadbeef), header{typePing, 0, 0, 0xdeadbeef}, ""},
		{"ping ACK", rawHeader('T', typePing, flagACK, 0, 42), header{typePing, flagACK, 0, 42}, ""},

		{"yamux version", rawHeader(0, typeData, flagSYN, 1, 0), header{}, "frame version"},
		{"wrong version", rawHeader('U', typePing, 0, 0, 0), header{}, "frame version"},
		{"unknown flag", rawHeader('T', typeData, 1<<4, 1, 0), header{}, "unknown frame flags"},
		{"high flag", rawHeader('T', typePing, 1<<15, 0, 0), header{}, "unknown frame flags"},
		{"data on stream 0", rawHeader('T', typeData, 0, 0, 1), header{}, "data frame on stream 0"},
		{"data over maxFrame", rawHeader('T', typeData, 0, 1, maxFrame+1), header{}, "at most"},
		{"data of 4 GiB", rawHeader('T', typeData, 0, 1, 1<<32-1), header{}, "at most"},
		{"ACK on data", rawHeader('T', typeData, flagACK, 1, 0), header{}, "ACK on a data frame"},
		{"window on stream 0", rawHeader('T', typeWindow, 0, 0, 10), header{}, "window update"},
		{"window with SYN", rawHeader('T', typeWindow, flagSYN, 1, 10), header{}, "window update"},
		{"window with ACK", rawHeader('T', typeWindow, flagACK, 1, 10), header{}, "window update"},
		{"window with RST", rawHeader('T', typeWindow, flagRST, 1, 10), header{}, "window update"},
		{"ping on a stream", rawHeader('T', typePing, 0, 1, 0), header{}, "ping on a stream"},
		{"ping with SYN", rawHeader('T', typePing, flagSYN, 0, 0), header{}, "ping on a stream"},
		{"ping with FIN", rawHeader('T', typePing, flagFIN, 0, 0), header{}, "ping on a stream"},
		{"ping with RST", rawHeader('T', typePing, flagRST, 0, 0), header{}, "ping on a stream"},
		{"ping ACK|FIN", rawHeader('T', typePing, flagACK|flagFIN, 0, 0), header{}, "ping on a stream"},
		{"unknown type 3", rawHeader('T', 3, 0, 1, 0), header{}, "unknown frame type"},
		{"unknown type 255", rawHeader('T', 255, 0, 0, 0), header{}, "unknown frame type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseHeader(tt.b)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseHeader: %v", err)
				}
				if h != tt.want {
					t.Fatalf("parseHeader = %+v, want %+v", h, tt.want)
				}
				return
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("parseHeader error = %v (%T), want a *ProtocolError", err, err)
			}
			if !strings.Contains(pe.Reason, tt.wantErr) {
				t.Fatalf("reason %q does not mention %q", pe.Reason, tt.wantErr)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	headers := []header{
		{typ: typeData, flags: flagSYN, stream: 1, length: 1},
		{typ: typeData, flags: flagSYN | flagFIN, stream: 0x7fffffff, length: maxFrame},
		{typ: typeData, flags: flagRST, stream: 0x01020304, length: 0},
		{typ: typeWindow, stream: 0x01020304, length: 0x0a0b0c0d},
		{typ: typeWindow, stream: 2, length: 0xffffffff},
		{typ: typePing, length: 0x12345678},
		{typ: typePing, flags: flagACK, length: 0},
	}
	for _, h := range headers {
		var b [headerSize]byte
		h.put(b[:])
		want := rawHeader('T', h.typ, h.flags, h.stream, h.length)
		if !bytes.Equal(b[:], want) {
			t.Errorf("put(%+v) = % x, want % x", h, b, want)
		}
		got, err := parseHeader(b[:])
		if err != nil {
			t.Errorf("parseHeader(put(%+v)): %v", h, err)
			continue
		}
		if got != h {
			t.Errorf("round trip of %+v gave %+v", h, got)
		}
	}
}

// frame encodes one frame with header.put.
func frame(typ uint8, flags uint16, stream uint32, payload []byte) []byte {
	b := make([]byte, headerSize+len(payload))
	header{typ: typ, flags: flags, stream: stream, length: uint32(len(payload))}.put(b)
	copy(b[headerSize:], payload)
	return b
}

func windowFrame(stream, delta uint32) []byte {
	b := make([]byte, headerSize)
	header{typ: typeWindow, stream: stream, length: delta}.put(b)
	return b
}

func pingFrame(flags uint16, v uint32) []byte {
	b := make([]byte, headerSize)
	header{typ: typePing, flags: flags, length: v}.put(b)
	return b
}

func concat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// fuzzConn is a connection whose reads come from a byte slice (then
// io.EOF) and whose writes are discarded.
type fuzzConn struct {
	r      *bytes.Reader
	closed atomic.Bool
	mu     sync.Mutex
}

func (c *fuzzConn) Read(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Short reads: frames are split across reads.
	if n := 7 + c.r.Len()%1000; len(b) > n {
		b = b[:n]
	}
	return c.r.Read(b)
}

func (c *fuzzConn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return len(b), nil
}

func (c *fuzzConn) Close() error                     { c.closed.Store(true); return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

func FuzzSession(f *testing.F) {
	payload := bytes.Repeat([]byte("tether"), 20)
	f.Add(concat(frame(typeData, flagSYN, 1, []byte("hello")), frame(typeData, flagFIN, 1, nil)))
	f.Add(frame(typeData, flagSYN|flagFIN, 1, []byte("one frame")))
	f.Add(concat(
		frame(typeData, flagSYN, 1, payload),
		frame(typeData, flagSYN, 3, []byte("second")),
		windowFrame(1, 1<<20),
		pingFrame(0, 7),
		pingFrame(flagACK, 8),
		frame(typeData, 0, 1, payload),
		frame(typeData, flagFIN, 3, nil),
		frame(typeData, flagRST, 1, nil),
	))
	f.Add(concat(frame(typeData, flagSYN, 1, nil), frame(typeData, flagRST, 1, nil), frame(typeData, flagSYN, 1, []byte("again"))))
	f.Add(concat(frame(typeData, flagSYN, 5, []byte("x")), windowFrame(5, 1<<32-1), windowFrame(5, 1<<32-1)))
	f.Add(concat(frame(typeData, 0, 9, []byte("unknown stream")), pingFrame(0, 1)))
	f.Add(frame(typeData, flagSYN, 2, []byte("wrong parity")))
	f.Add(concat(frame(typeData, flagSYN, 1, nil), frame(typeData, flagSYN, 1, nil)))
	f.Add(rawHeader(0, typeData, flagSYN, 1, 0))
	f.Add(frame(typeData, flagSYN, 1, []byte("truncated"))[:15])
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &fuzzConn{r: bytes.NewReader(in)}
		s := Server(conn, Config{AcceptBacklog: 4})
		defer s.Close()

		var wg sync.WaitGroup
		var drained atomic.Int64
		wg.Go(func() {
			for {
				st, err := s.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					n, _ := io.Copy(io.Discard, st)
					drained.Add(n)
					st.Write([]byte("bye"))
					st.Close()
				})
			}
		})

		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("the session still lives 5 s after its input (%d bytes) ended", len(in))
		}
		if s.Err() == nil {
			t.Errorf("the session ended without an error")
		}
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatalf("the stream readers are still running 5 s after the session ended")
		}
		if n := drained.Load(); n > int64(len(in)) {
			t.Fatalf("read %d bytes from streams out of %d input bytes", n, len(in))
		}
		if n := s.NumStreams(); n != 0 {
			t.Fatalf("NumStreams = %d after the session ended", n)
		}
	})
}

// readFrame reads one frame, as a raw peer.
func readFrame(r io.Reader) (header, []byte, error) {
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return header{}, nil, err
	}
	h, err := parseHeader(hb[:])
	if err != nil {
		return h, nil, err
	}
	var p []byte
	if h.typ == typeData {
		p = make([]byte, h.length)
		_, err = io.ReadFull(r, p)
	}
	return h, p, err
}

// A raw peer's frames that break the protocol end the session with a
// *ProtocolError.
func TestProtocolErrors(t *testing.T) {
	fill := bytes.Repeat([]byte{1}, maxFrame)
	window := concat(frame(typeData, flagSYN, 1, fill), frame(typeData, 0, 1, fill),
		frame(typeData, 0, 1, fill), frame(typeData, 0, 1, fill)) // 256 KiB
	tests := []struct {
		name, in, want string // want: "" for a session that lives on
	}{
		{"bad version", string(rawHeader(0, typeData, flagSYN, 1, 0)), "frame version"},
		{"unknown type", string(rawHeader('T', 9, 0, 1, 0)), "unknown frame type"},
		{"data past the window", string(concat(window, frame(typeData, 0, 1, []byte{1}))), "past its window"},
		{"SYN on a server id", string(frame(typeData, flagSYN, 2, nil)), "an id of this side's"},
		{"opened twice", string(concat(frame(typeData, flagSYN, 1, nil), frame(typeData, flagSYN, 1, nil))), "opened twice"},
		{"a window that wraps", string(concat(frame(typeData, flagSYN, 1, nil), windowFrame(1, 1<<31-1))), "a window of over"},
		{"data up to the window", string(window), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, conn := tcpPair(t)
			s := Server(conn, Config{})
			defer s.Close()
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			raw.Write([]byte(tt.in))
			if tt.want == "" {
				if _, err := raw.Write(pingFrame(0, 99)); err != nil {
					t.Fatal(err)
				}
				for { // the session answers the ping: it lives
					h, _, err := readFrame(raw)
					if err != nil {
						t.Fatalf("reading the session's frames: %v (session: %v)", err, s.Err())
					}
					if h.typ == typePing && h.flags == flagACK && h.length == 99 {
						return
					}
				}
			}
			waitDone(t, s, 5*time.Second)
			var pe *ProtocolError
			if err := s.Err(); !errors.As(err, &pe) || !strings.Contains(pe.Reason, tt.want) {
				t.Fatalf("Err() = %v; want a *ProtocolError about %q", err, tt.want)
			}
			if _, err := io.Copy(io.Discard, raw); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the session did not close its connection")
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	short := Config{KeepAlive: 50 * time.Millisecond, WriteTimeout: 100 * time.Millisecond}
	t.Run("silent peer", func(t *testing.T) {
		c1, _ := tcpPair(t) // the other end neither reads nor writes
		start := time.Now()
		s := Client(c1, short)
		defer s.Close()
		waitDone(t, s, time.Second)
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Errorf("the session ended after %v, before KeepAlive+WriteTimeout", took)
		}
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "keepalive") {
			t.Fatalf("Err() = %v; want a keepalive failure", err)
		}
		t.Logf("Err() = %v", s.Err())
	})
	t.Run("stuck write", func(t *testing.T) {
		c1, c2 := pipePair(t) // c2 pings but never reads: the answers block
		go func() {
			for c2.SetWriteDeadline(time.Now().Add(5 * time.Second)); ; time.Sleep(10 * time.Millisecond) {
				if _, err := c2.Write(pingFrame(0, 1)); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		s := Client(c1, short)
		defer s.Close()
		waitDone(t, s, time.Second)
		if took := time.Since(start); took < 100*time.Millisecond {
			t.Errorf("the session ended after %v, before WriteTimeout", took)
		}
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "stuck") {
			t.Fatalf("Err() = %v; want a stuck write", err)
		}
	})
	t.Run("healthy idle", func(t *testing.T) {
		c, s, _ := newPair(t, tcpPair, short, short)
		select {
		case <-c.Done():
			t.Fatalf("client ended: %v", c.Err())
		case <-s.Done():
			t.Fatalf("server ended: %v", s.Err())
		case <-time.After(time.Second):
		}
		writeT(t, openT(t, c), "still up")
		readT(t, acceptT(t, s), "still up")
	})
}
