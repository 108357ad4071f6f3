package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// HandshakeTimeout bounds the Hello/Welcome exchange.
const HandshakeTimeout = 15 * time.Second

// ClientHandshake sends hello on conn and returns the agent's Welcome. A
// refusal by the agent is returned as an error carrying its message.
func ClientHandshake(conn net.Conn, hello Hello) (Welcome, error) {
	hello.Magic = Magic
	hello.Version = Version
	hello.MinVersion = MinVersion
	if hello.Capabilities == nil {
		hello.Capabilities = AllCapabilities
	}
	conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	var w Welcome
	// A peer that hangs up shows as EOF, or as a reset (when our hello
	// arrived after it closed), whether writing or reading: one message.
	hungUp := func(err error) bool {
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	}
	closed := fmt.Errorf("the agent closed the connection during the handshake (is %s a tether-agent? check the agent address)", conn.RemoteAddr())
	if err := WriteFrame(conn, hello); err != nil {
		if hungUp(err) {
			return w, closed
		}
		return w, fmt.Errorf("sending hello: %w", err)
	}
	if err := ReadFrame(conn, &w); err != nil {
		if hungUp(err) {
			return w, closed
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Through a port-forward: the pod is there, its agent is not
			// listening (not yet, or not any more).
			return w, fmt.Errorf("reading the agent's welcome from %s: %w: the agent is not running there", conn.RemoteAddr(), err)
		}
		return w, fmt.Errorf("reading the agent's welcome from %s: %w (is it a tether-agent? check the agent address)", conn.RemoteAddr(), err)
	}
	if w.Error != "" && w.Final {
		return w, &EndedError{Reason: w.Error}
	}
	if w.Error != "" {
		if w.Version != Version {
			return w, fmt.Errorf("the agent refused the session: %s (the agent speaks protocol %d, this tether %d: use tether and tether-agent from the same release)", w.Error, w.Version, Version)
		}
		return w, fmt.Errorf("the agent refused the session: %s", w.Error)
	}
	if w.Version < MinVersion {
		return w, fmt.Errorf("the agent speaks protocol %d, but this tether needs %d or newer: the agent comes from an older release; use tether and tether-agent from the same release (agent.image, or the tether-agent at --agent-addr)", w.Version, MinVersion)
	}
	return w, nil
}

// EndedError is an agent's refusal of a session that was ended for good
// (by an administrator): reconnecting cannot help.
type EndedError struct{ Reason string }

func (e *EndedError) Error() string { return e.Reason }

// ServerHandshake reads a Hello from conn, lets decide build the Welcome
// (decide may set Welcome.Error to refuse), and writes it. Version and magic
// checks happen before decide is called; their refusals are written to the
// client too. It returns the Hello and the Welcome sent.
func ServerHandshake(conn net.Conn, decide func(Hello) Welcome) (Hello, Welcome, error) {
	conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	var h Hello
	if err := ReadFrame(conn, &h); err != nil {
		return h, Welcome{}, fmt.Errorf("reading hello: %w", err)
	}
	var w Welcome
	switch {
	case h.Magic != Magic:
		w = Welcome{Error: "not a tether client (bad magic)"}
	default:
		if msg := refuseVersion(h.Version, h.MinVersion); msg != "" {
			w = Welcome{Error: msg}
		} else {
			w = decide(h)
		}
	}
	w.Version = Version
	if err := WriteFrame(conn, w); err != nil {
		return h, w, fmt.Errorf("sending welcome: %w", err)
	}
	if w.Error != "" {
		return h, w, fmt.Errorf("refused client: %s", w.Error)
	}
	return h, w, nil
}

// MaxDatagram is the largest UDP payload carried on a dial udp stream.
const MaxDatagram = 65535

// WriteDatagram writes one UDP payload on a stream (2-byte length prefix).
func WriteDatagram(w io.Writer, b []byte) error {
	if len(b) > MaxDatagram {
		return fmt.Errorf("datagram of %d bytes is too large", len(b))
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	_, err := w.Write(buf)
	return err
}

// ReadDatagram reads one UDP payload from a stream into buf (which must
// hold MaxDatagram bytes) and returns its length.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > len(buf) {
		return 0, fmt.Errorf("datagram of %d bytes does not fit a %d-byte buffer", n, len(buf))
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, fmt.Errorf("reading datagram: %w", err)
	}
	return n, nil
}

// refuseVersion is the agent's refusal of a client speaking protocols
// [clientMin, clientVersion], or "" when it is compatible. It is written for
// the user of that client.
func refuseVersion(clientVersion, clientMin int) string {
	switch {
	case clientVersion < MinVersion:
		return fmt.Sprintf("tether speaks protocol %d, but this agent needs %d or newer: tether comes from an older release; upgrade tether, or use the agent of its release (agent.image)", clientVersion, MinVersion)
	case clientMin > Version:
		return fmt.Sprintf("tether needs protocol %d or newer, but this agent speaks %d: the agent comes from an older release; use the agent of tether's release (agent.image), or restart the tether-agent at --agent-addr from that release", clientMin, Version)
	}
	return ""
}
