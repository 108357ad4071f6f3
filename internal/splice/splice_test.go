package splice

import (
	"io"
	"net"
	"testing"
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
