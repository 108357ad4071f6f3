package protocol

import (
	"io"
	"net"
	"testing"
)

// muxPair is a client and a server Mux over a loopback TCP connection.
func muxPair(b *testing.B) (Mux, Mux) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	cm, _ := NewClientMux(c)
	sm, _ := NewServerMux(s)
	b.Cleanup(func() { cm.Close(); sm.Close() })
	return cm, sm
}

// BenchmarkMuxRoundTrip: a 100-byte request and its echo on one stream.
func BenchmarkMuxRoundTrip(b *testing.B) {
	cm, sm := muxPair(b)
	go func() {
		st, err := sm.Accept()
		if err != nil {
			return
		}
		io.Copy(st, st)
	}()
	st, _ := cm.Open()
	buf := make([]byte, 100)
	b.ResetTimer()
	for range b.N {
		st.Write(buf)
		if _, err := io.ReadFull(st, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMuxDownload: bytes from a server stream to a client stream.
func BenchmarkMuxDownload(b *testing.B) {
	cm, sm := muxPair(b)
	const size = 64 << 20
	b.SetBytes(size)
	go func() {
		for {
			st, err := sm.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(st, io.LimitReader(zeros{}, size))
				st.Close()
			}()
		}
	}()
	b.ResetTimer()
	for range b.N {
		st, _ := cm.Open()
		st.Write([]byte{1})
		if n, err := io.Copy(io.Discard, st); n != size || err != nil {
			b.Fatal(n, err)
		}
		st.Close()
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }
