package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
)

// Mux is the stream multiplexer over one connection. It is an interface so
// the implementation (yamux today) can be swapped without touching callers.
type Mux interface {
	// Open starts a new stream to the peer.
	Open() (Stream, error)
	// Accept waits for the peer to open a stream.
	Accept() (Stream, error)
	// Close tears down every stream and the connection.
	Close() error
	// Done is closed when the mux is dead (peer gone, keepalive timeout, Close).
	Done() <-chan struct{}
}

// Stream is one bidirectional byte stream inside a Mux.
type Stream interface {
	net.Conn
	// CloseWrite signals EOF to the peer while reading continues until the
	// peer's EOF. Close does the same and is what ends a stream normally:
	// both sides close after reading the other's EOF.
	CloseWrite() error
}

// KeepAlive settings: a mux whose keepalive pings go unanswered for
// KeepAliveInterval+ConnectionWriteTimeout is dead.
const (
	KeepAliveInterval = 5 * time.Second
	writeTimeout      = 15 * time.Second
)

// yamux was chosen over smux: smux v1.5 discards data that arrived before a
// stream's second FIN when both sides half-close (seen in TestMuxStreams),
// which breaks HTTP/1.0-style request/EOF/response exchanges.
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = KeepAliveInterval
	c.ConnectionWriteTimeout = writeTimeout
	// The port-forward's loaded round trip is ~10 ms: a 1 MiB window capped
	// a download at ~110 MiB/s; 16 MiB lets it run at the tunnel's speed.
	// Memory is only used while a reader falls behind.
	c.MaxStreamWindowSize = 16 << 20
	c.StreamCloseTimeout = time.Minute
	c.AcceptBacklog = 1024
	c.LogOutput = io.Discard
	return c
}

// NewClientMux wraps conn (after the handshake) as the client side.
func NewClientMux(conn net.Conn) (Mux, error) {
	s, err := yamux.Client(&coalescingConn{Conn: conn}, yamuxConfig())
	if err != nil {
		return nil, fmt.Errorf("starting stream multiplexer: %w", err)
	}
	return &yamuxMux{s}, nil
}

// NewServerMux wraps conn (after the handshake) as the server side.
func NewServerMux(conn net.Conn) (Mux, error) {
	s, err := yamux.Server(&coalescingConn{Conn: conn}, yamuxConfig())
	if err != nil {
		return nil, fmt.Errorf("starting stream multiplexer: %w", err)
	}
	return &yamuxMux{s}, nil
}

type yamuxMux struct{ s *yamux.Session }

func (m *yamuxMux) Open() (Stream, error) {
	st, err := m.s.OpenStream()
	if err != nil {
		return nil, err
	}
	return yamuxStream{st, m.s}, nil
}

func (m *yamuxMux) Accept() (Stream, error) {
	st, err := m.s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return yamuxStream{st, m.s}, nil
}

func (m *yamuxMux) Close() error          { return m.s.Close() }
func (m *yamuxMux) Done() <-chan struct{} { return m.s.CloseChan() }

type yamuxStream struct {
	*yamux.Stream
	sess *yamux.Session
}

// ErrLost is what reading a stream gives once its connection to the peer
// died (a tunnel drop): a reset, never the end of the data, so a program
// whose connection was in flight sees it fail, not a truncated stream
// that looks complete.
var ErrLost = fmt.Errorf("the connection to the peer was lost: %w", syscall.ECONNRESET)

func (s yamuxStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if err == io.EOF && s.sess.IsClosed() {
		// yamux ends every stream of a dead session with EOF.
		err = ErrLost
	}
	return n, err
}

// CloseWrite: a yamux Close is a half-close (FIN); reads go on until the
// peer's FIN.
func (s yamuxStream) CloseWrite() error { return s.Stream.Close() }

// coalescingConn joins each yamux data frame's 12-byte header and its body
// into one write. yamux writes them separately, so every frame would
// cross the port-forward (client, API server, kubelet, runtime) as two
// messages; joined, a small request or response is one.
type coalescingConn struct {
	net.Conn
	mu  sync.Mutex
	hdr []byte // a data frame's header waiting for its body
	buf []byte
}

// yamux's header: version, type, flags (2), stream id (4), length (4).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

func (c *coalescingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hdr == nil && len(b) == yamuxHeaderSize && b[1] == yamuxTypeData && binary.BigEndian.Uint32(b[8:12]) > 0 {
		// The body follows in the next write.
		c.hdr = append(c.buf[:0], b...)
		return len(b), nil
	}
	if c.hdr == nil {
		return c.Conn.Write(b)
	}
	c.buf = append(c.hdr, b...)
	c.hdr = nil
	n, err := c.Conn.Write(c.buf)
	return max(n-yamuxHeaderSize, 0), err
}
