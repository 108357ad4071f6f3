//go:build unix

package mux

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// sockPair is tcpPair's connections as TCP ones.
func sockPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	a, b := tcpPair(t)
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestDirectDelivery: a stream copied to a socket (io.Copy, so WriteTo)
// gets its bytes written straight from the receive loop while the socket
// takes them, and through the reader when it does not (a slow socket
// reader): in order and complete either way.
func TestDirectDelivery(t *testing.T) {
	for _, tc := range []struct {
		name string
		slow bool // the socket's reader pauses: its buffer fills
	}{{"reader keeps up", false}, {"slow reader", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := sockPair(t)
			cs, ss := Client(a, Config{}), Server(b, Config{})
			defer cs.Close()
			defer ss.Close()
			sockW, sockR := sockPair(t)
			if tc.slow {
				// Small, but over loopback's MSS: window updates still flow.
				sockW.SetWriteBuffer(128 << 10)
				sockR.SetReadBuffer(128 << 10)
			}

			st, err := cs.Open()
			if err != nil {
				t.Fatal(err)
			}
			copied := make(chan error, 1)
			go func() { _, err := io.Copy(sockW, st); sockW.CloseWrite(); copied <- err }()
			var want []byte
			go func() {
				far, err := ss.Accept()
				if err != nil {
					return
				}
				r := rand.New(rand.NewPCG(1, 2))
				for i := range 2000 {
					msg := bytes.Repeat([]byte{byte(i)}, 1+r.IntN(3000))
					if _, err := far.Write(msg); err != nil {
						return
					}
				}
				far.CloseWrite()
			}()
			r := rand.New(rand.NewPCG(1, 2))
			for i := range 2000 {
				want = append(want, bytes.Repeat([]byte{byte(i)}, 1+r.IntN(3000))...)
			}
			var got bytes.Buffer
			buf := make([]byte, 4096)
			for reads := 0; ; reads++ {
				if tc.slow && reads%16 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				n, err := sockR.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := <-copied; err != nil {
				t.Fatalf("io.Copy: %v", err)
			}
			if sha256.Sum256(got.Bytes()) != sha256.Sum256(want) {
				t.Fatalf("got %d bytes, want %d: not the same", got.Len(), len(want))
			}
			if d := cs.directed.Load(); d == 0 {
				t.Errorf("no byte went straight to the socket")
			} else if tc.slow && d == int64(len(want)) {
				t.Errorf("every byte went straight to a socket whose reader paused")
			}
		})
	}
}
