package agenttls

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pipeListener hands out the server ends of pipes whose remote address
// is from.
type pipeListener struct {
	ch chan net.Conn
}

func (l *pipeListener) Accept() (net.Conn, error) {
	c, ok := <-l.ch
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (a addrConn) RemoteAddr() net.Addr { return a.remote }

// dial connects a client end from remote to a server end served by an
// echo over a Listener; it returns the client end.
func dial(t *testing.T, remote string, requireTLS bool) net.Conn {
	t.Helper()
	cfg, err := ServerConfig("the-token")
	if err != nil {
		t.Fatal(err)
	}
	pl := &pipeListener{ch: make(chan net.Conn, 1)}
	l := &Listener{Listener: pl, Config: cfg, RequireTLS: requireTLS}
	client, server := net.Pipe()
	pl.ch <- addrConn{Conn: server, remote: &net.TCPAddr{IP: net.ParseIP(remote), Port: 1}}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer c.Close()
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		c.Write(b)
	}()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { client.Close() })
	return client
}

func echo(c net.Conn) (string, error) {
	if _, err := c.Write([]byte("hello")); err != nil {
		return "", err
	}
	b := make([]byte, 5)
	_, err := io.ReadFull(c, b)
	return string(b), err
}

func TestTLSWithTheToken(t *testing.T) {
	c := Client(dial(t, "10.0.0.7", true), "the-token")
	if got, err := echo(c); err != nil || got != "hello" {
		t.Fatalf("TLS with the token: %q, %v", got, err)
	}
	if v := c.ConnectionState().Version; v != 0x0304 {
		t.Errorf("TLS version %x, want 1.3", v)
	}
}

func TestAnotherTokenIsNotThatAgent(t *testing.T) {
	c := Client(dial(t, "10.0.0.7", true), "another-token")
	if _, err := echo(c); !errors.Is(err, ErrNotThatAgent) {
		t.Fatalf("with another token: %v, want %v", err, ErrNotThatAgent)
	}
}

func TestPlain(t *testing.T) {
	// From loopback (a port-forward): plain is served.
	if got, err := echo(dial(t, "127.0.0.1", true)); err != nil || got != "hello" {
		t.Errorf("plain from loopback: %q, %v", got, err)
	}
	// From the pod network: refused when TLS is required...
	if got, err := echo(dial(t, "10.0.0.7", true)); err == nil {
		t.Errorf("plain from the pod network was served (%q), want it closed", got)
	}
	// ...served when not (an agent without a token).
	if got, err := echo(dial(t, "10.0.0.7", false)); err != nil || got != "hello" {
		t.Errorf("plain, TLS not required: %q, %v", got, err)
	}
}
