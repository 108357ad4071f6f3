package splice

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/tether-dev/tether/internal/mux"
)

func pair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestJoinHalfClose: a client that writes, half-closes, then reads the
// answer (HTTP/1.0 style) gets the whole answer through the join.
func TestJoinHalfClose(t *testing.T) {
	client, proxyA := pair(t)
	proxyB, server := pair(t)
	go Join(proxyA, proxyB)
	go func() {
		req, _ := io.ReadAll(server) // until the client's half-close
		server.Write(append([]byte("echo:"), req...))
		server.CloseWrite()
	}()
	client.Write([]byte("hello"))
	client.CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "echo:hello" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestJoinResetReachesStream: a client connection that ends in a reset
// resets the mux stream it is joined to, so the far side sees a failure,
// not the end of the data.
func TestJoinResetReachesStream(t *testing.T) {
	client, proxy := pair(t)
	a, b := pair(t)
	cm, sm := mux.Client(a, mux.Config{}), mux.Server(b, mux.Config{})
	defer cm.Close()
	defer sm.Close()
	st, err := cm.Open()
	if err != nil {
		t.Fatal(err)
	}
	go Join(proxy, st)
	client.Write([]byte("part of a request"))
	far, err := sm.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("part of a request"))
	if _, err := io.ReadFull(far, got); err != nil {
		t.Fatal(err)
	}
	client.SetLinger(0)
	client.Close()
	_, err = far.Read(got)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the far side read %v after the client's reset, want a reset", err)
	}
}
