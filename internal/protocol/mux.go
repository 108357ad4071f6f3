package protocol

import (
	"fmt"
	"io"
	"net"
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
	c.MaxStreamWindowSize = 1 << 20
	c.StreamCloseTimeout = time.Minute
	c.AcceptBacklog = 1024
	c.LogOutput = io.Discard
	return c
}

// NewClientMux wraps conn (after the handshake) as the client side.
func NewClientMux(conn net.Conn) (Mux, error) {
	s, err := yamux.Client(conn, yamuxConfig())
	if err != nil {
		return nil, fmt.Errorf("starting stream multiplexer: %w", err)
	}
	return &yamuxMux{s}, nil
}

// NewServerMux wraps conn (after the handshake) as the server side.
func NewServerMux(conn net.Conn) (Mux, error) {
	s, err := yamux.Server(conn, yamuxConfig())
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
	return yamuxStream{st}, nil
}

func (m *yamuxMux) Accept() (Stream, error) {
	st, err := m.s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return yamuxStream{st}, nil
}

func (m *yamuxMux) Close() error          { return m.s.Close() }
func (m *yamuxMux) Done() <-chan struct{} { return m.s.CloseChan() }

type yamuxStream struct{ *yamux.Stream }

// CloseWrite: a yamux Close is a half-close (FIN); reads go on until the
// peer's FIN.
func (s yamuxStream) CloseWrite() error { return s.Stream.Close() }
