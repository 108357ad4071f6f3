// Package mux carries many byte streams over one connection: tether's
// tunnel between the CLI and its agent (a port-forward, or TLS to the
// agent's pod IP). It is built for that tunnel's costs: a write goes to
// the connection from the writer's own goroutine, one write per frame (a
// frame is one port-forward message, never a header and a body apart);
// received data is kept in pooled chunks, handed on without a copy by
// WriteTo; streams open without a frame of their own (the first data
// carries the open); and every stream has flow control, so one stream
// whose reader is slow never holds up the others.
//
// A stream is a half-closable net.Conn. Its reads end with io.EOF after
// the peer's half-close, with ECONNRESET when the peer reset it, and
// with ErrLost when the connection to the peer died.
package mux

import (
	"encoding/binary"
	"fmt"
)

// A frame is a 12-byte header and, for data, a payload:
//
//	version (1) · type (1) · flags (2) · stream id (4) · length (4)
//
// length is the payload's for data, the window's increment for a window
// update, and an opaque value for a ping.
const (
	headerSize   = 12
	protoVersion = 'T' // not yamux's 0: a yamux peer is refused, not misread

	typeData   = 0
	typeWindow = 1
	typePing   = 2

	flagSYN = 1 << 0 // opens the stream
	flagACK = 1 << 1 // a ping's answer
	flagFIN = 1 << 2 // the sender half-closes the stream
	flagRST = 1 << 3 // the sender resets the stream
	flagAll = flagSYN | flagACK | flagFIN | flagRST

	// maxFrame bounds a data frame's payload: frames of one stream do not
	// hold the connection from the others for long.
	maxFrame = 64 << 10
)

// header is a decoded frame header.
type header struct {
	typ    uint8
	flags  uint16
	stream uint32
	length uint32
}

func (h header) put(b []byte) {
	b[0] = protoVersion
	b[1] = h.typ
	binary.BigEndian.PutUint16(b[2:4], h.flags)
	binary.BigEndian.PutUint32(b[4:8], h.stream)
	binary.BigEndian.PutUint32(b[8:12], h.length)
}

// ProtocolError is a frame that breaks the protocol: the connection
// carrying it is closed.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "stream multiplexer: " + e.Reason }

// parseHeader decodes and checks a header.
func parseHeader(b []byte) (header, error) {
	h := header{
		typ:    b[1],
		flags:  binary.BigEndian.Uint16(b[2:4]),
		stream: binary.BigEndian.Uint32(b[4:8]),
		length: binary.BigEndian.Uint32(b[8:12]),
	}
	if b[0] != protoVersion {
		return h, &ProtocolError{Reason: fmt.Sprintf("frame version %#x, want %#x (the peer is not this release's tether)", b[0], protoVersion)}
	}
	if h.flags&^flagAll != 0 {
		return h, &ProtocolError{Reason: fmt.Sprintf("unknown frame flags %#x", h.flags)}
	}
	switch h.typ {
	case typeData:
		if h.stream == 0 {
			return h, &ProtocolError{Reason: "a data frame on stream 0"}
		}
		if h.length > maxFrame {
			return h, &ProtocolError{Reason: fmt.Sprintf("a data frame of %d bytes (at most %d)", h.length, maxFrame)}
		}
		if h.flags&flagACK != 0 {
			return h, &ProtocolError{Reason: "ACK on a data frame"}
		}
	case typeWindow:
		if h.stream == 0 || h.flags != 0 {
			return h, &ProtocolError{Reason: "a window update on stream 0 or with flags"}
		}
	case typePing:
		if h.stream != 0 || h.flags&^flagACK != 0 {
			return h, &ProtocolError{Reason: "a ping on a stream, or with stream flags"}
		}
	default:
		return h, &ProtocolError{Reason: fmt.Sprintf("unknown frame type %d", h.typ)}
	}
	return h, nil
}
