// Package splice joins two byte streams (TCP connections, mux streams)
// in both directions, passing half-closes through.
package splice

import (
	"io"
	"net"
	"sync"
)

// Conn is a connection whose write side can be shut on its own.
type Conn interface {
	net.Conn
	CloseWrite() error
}

// Join copies a and b into each other until both directions end, passing
// each side's EOF on as a half-close, then closes both. An error in either
// direction (a reset) tears both down at once, so the peer sees it.
func Join(a, b Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err != nil {
			reset(a)
			reset(b)
			return
		}
		dst.CloseWrite()
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// reset closes c with a reset (TCP: no lingering FIN; a mux stream: its
// reset), so that its peer sees the failure as one, not as the end of
// the data.
func reset(c Conn) {
	if r, ok := c.(interface{ Reset() error }); ok {
		r.Reset()
		return
	}
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	c.Close()
}
