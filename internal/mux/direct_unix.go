//go:build unix

package mux

import (
	"io"
	"net"
	"syscall"
)

// rawSink is w's socket when bytes can be written to it directly
// (tryWrite): a TCP or Unix socket.
func rawSink(w io.Writer) syscall.RawConn {
	var sc syscall.Conn
	switch c := w.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// tryWrite writes what of b the socket takes without waiting, and says
// how much. An error is left for the next ordinary write to report.
func tryWrite(rc syscall.RawConn, b []byte) int {
	n := 0
	rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := syscall.Write(int(fd), b[n:])
			if m <= 0 || err != nil {
				break
			}
			n += m
		}
		return true // never wait: the reader's goroutine does that
	})
	return n
}
