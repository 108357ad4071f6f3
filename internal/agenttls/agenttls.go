// Package agenttls secures connections to a tether-agent that do not go
// through the API server (the direct transport from inside the cluster,
// tether-operator's): TLS 1.3 with a key derived from the agent's token.
// A client that knows the token (it presents it in its hello anyway)
// checks that it talks to that agent, and nobody on the pod network reads
// or changes the session. Connections through a port-forward arrive on
// the agent's loopback already carried by the API server's TLS: the
// agent takes them plain, or in TLS when the client speaks it.
package agenttls

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// key is the agent's TLS key for token: the same in the agent and in
// every client that knows the token.
func key(token string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("tether-agent tls v1\x00" + token))
	return ed25519.NewKeyFromSeed(seed[:])
}

// ServerConfig is the agent's TLS configuration for token.
func ServerConfig(token string) (*tls.Config, error) {
	k := key(token)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tether-agent"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return nil, fmt.Errorf("making the agent's TLS certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}},
	}, nil
}

// ErrNotThatAgent: the peer's TLS key is not the one the token gives.
var ErrNotThatAgent = errors.New("the agent's TLS key is not the one its token gives: this address is not that agent (its pod was replaced, or someone else answers there); tether looks the agent up again")

// ClientConfig is a client's TLS configuration for the agent of token:
// it accepts only the key that token gives (no CA: the key is the
// identity).
func ClientConfig(token string) *tls.Config {
	want := key(token).Public().(ed25519.PublicKey)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verified below: the peer's key, not a chain to a CA.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return ErrNotThatAgent
			}
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("the agent's TLS certificate: %w", err)
			}
			if got, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(got, want) {
				return ErrNotThatAgent
			}
			return nil
		},
	}
}

// Client secures conn to the agent of token.
func Client(conn net.Conn, token string) *tls.Conn { return tls.Client(conn, ClientConfig(token)) }

// Listener serves the agent's connections: TLS ones (sniffed by their
// first byte, a handshake record, which no plain hello starts with) and
// plain ones from loopback (port-forwards). A plain connection from
// elsewhere is closed when RequireTLS is set (the agent has a token:
// its sessions must not cross the pod network in clear).
type Listener struct {
	net.Listener
	Config     *tls.Config
	RequireTLS bool
}

// Accept returns the next connection; whether it speaks TLS is found at
// its first read or write (not here: one silent client must not hold up
// the others).
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, l: l}, nil
}

// handshakeRecord is a TLS record's first byte for a handshake. A plain
// hello starts with its length's high byte: 0x16 is over 350 MB.
const handshakeRecord = 0x16

// sniffConn is a connection that becomes TLS or plain at first use.
type sniffConn struct {
	net.Conn // the socket (addresses, deadlines)
	l        *Listener
	once     sync.Once
	c        net.Conn // after the sniff
	err      error
}

// ErrPlainRefused closes a plain connection from off the pod's loopback.
var ErrPlainRefused = errors.New("a plain connection from outside the pod: the agent takes only TLS there (use a tether of the same release)")

func (s *sniffConn) sniff() error {
	s.once.Do(func() {
		br := bufio.NewReaderSize(s.Conn, 16)
		b, err := br.Peek(1)
		if err != nil {
			s.err = err
			return
		}
		raw := &bufConn{Conn: s.Conn, r: br}
		if b[0] == handshakeRecord {
			s.c = tls.Server(raw, s.l.Config)
			return
		}
		if s.l.RequireTLS && !isLoopback(s.Conn.RemoteAddr()) {
			s.err = ErrPlainRefused
			s.Conn.Close()
			return
		}
		s.c = raw
	})
	return s.err
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (s *sniffConn) Read(b []byte) (int, error) {
	if err := s.sniff(); err != nil {
		return 0, err
	}
	return s.c.Read(b)
}

func (s *sniffConn) Write(b []byte) (int, error) {
	if err := s.sniff(); err != nil {
		return 0, err
	}
	return s.c.Write(b)
}

// Close closes the socket (a TLS session ends without close_notify: the
// peer sees the connection end, as it would without TLS).
func (s *sniffConn) Close() error { return s.Conn.Close() }

// CloseWrite half-closes the connection (TLS: a close_notify).
func (s *sniffConn) CloseWrite() error {
	if err := s.sniff(); err != nil {
		return err
	}
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// TLS reports whether the connection speaks TLS (after its first use).
func (s *sniffConn) TLS() bool {
	_, ok := s.c.(*tls.Conn)
	return ok
}

// bufConn reads through r (what the sniff peeked first).
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
