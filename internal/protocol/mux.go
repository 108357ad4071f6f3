package protocol

import (
	"net"
	"time"

	"github.com/tether-dev/tether/internal/mux"
)

// Mux is the stream multiplexer over one connection (internal/mux). It is
// an interface so that callers and tests need not know the implementation.
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

// KeepAliveInterval is how often each side pings the other: a tunnel
// silent for KeepAliveInterval plus the write timeout (15 s) is dead.
const KeepAliveInterval = 5 * time.Second

// muxConfig: a port-forward's loaded round trip is ~10 ms, so a stream's
// window grows to 16 MiB (mux.Config's default) for a download to run at
// the tunnel's speed; memory is only used while a reader falls behind.
func muxConfig() mux.Config {
	return mux.Config{KeepAlive: KeepAliveInterval, WriteTimeout: 15 * time.Second, CloseTimeout: time.Minute, AcceptBacklog: 1024}
}

// NewClientMux wraps conn (after the handshake) as the client side.
func NewClientMux(conn net.Conn) (Mux, error) {
	return session{mux.Client(conn, muxConfig())}, nil
}

// NewServerMux wraps conn (after the handshake) as the server side.
func NewServerMux(conn net.Conn) (Mux, error) {
	return session{mux.Server(conn, muxConfig())}, nil
}

// session is a mux.Session as a Mux.
type session struct{ s *mux.Session }

func (m session) Open() (Stream, error) {
	st, err := m.s.Open()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (m session) Accept() (Stream, error) {
	st, err := m.s.Accept()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (m session) Close() error          { return m.s.Close() }
func (m session) Done() <-chan struct{} { return m.s.Done() }

// ErrLost is what reading a stream gives once its connection to the peer
// died (a tunnel drop): a reset, never the end of the data, so a program
// whose connection was in flight sees it fail, not a truncated stream
// that looks complete.
var ErrLost = mux.ErrLost
