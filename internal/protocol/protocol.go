// Package protocol is the wire protocol between `tether exec` and
// tether-agent: a versioned handshake on the raw connection, then a stream
// multiplexer (smux) where every request opens its own stream, starting with
// one length-prefixed JSON request frame and one response frame. Streams
// that carry connections (dial) or file content continue as raw bytes.
//
// Messages are append-only: new fields may be added, none removed or
// reinterpreted; new behaviour is announced with capability strings in the
// handshake. All decoders are fuzzed.
package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Version is the protocol version this build speaks. MinVersion is the
// oldest peer version it still accepts.
const (
	Version    = 2
	MinVersion = 2
)

// DialTimeout bounds one connect the agent makes for a session.
const DialTimeout = 30 * time.Second

// MaxFrame bounds one JSON frame (requests, responses, directory listings).
// File content and connection bytes do not travel in frames.
const MaxFrame = 4 << 20

// ErrFrameTooLarge is returned when a peer announces a frame above MaxFrame.
var ErrFrameTooLarge = errors.New("protocol frame too large")

// WriteFrame writes v as one frame: a 4-byte big-endian length, then JSON.
func WriteFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %T: %w", v, err)
	}
	if len(body) > MaxFrame {
		return fmt.Errorf("encoding %T: %w (%d bytes)", v, ErrFrameTooLarge, len(body))
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame into v. Unknown JSON fields are ignored (a newer
// peer may send more); a frame above MaxFrame is an error before any
// allocation of that size.
func ReadFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, MaxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading %d-byte frame: %w", n, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding frame: %w", err)
	}
	return nil
}
