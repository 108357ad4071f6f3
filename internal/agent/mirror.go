package agent

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/internal/httpframe"
	"github.com/tether-dev/tether/internal/protocol"
)

// Mirroring: a copy of each connection's incoming bytes goes to every
// mirroring session, and the deployed app is never slowed by it. The
// copy of an HTTP/1 connection is cut at request boundaries: a request
// that arrives while the session is behind (mirrorBehind bytes queued
// for it, all its connections together) is not copied, and the copies go
// on with the next requests once it has caught up; the session is told
// how many were left out.
// Other protocols have no boundaries: their copy is cut for good when it
// falls behind (counted as one).
const (
	// mirrorBehind is the bytes queued for a subscription from which a
	// new request is not copied.
	mirrorBehind = 2 << 20
	// mirrorCut is the bytes queued for a subscription at which a copy
	// in progress is cut (its request is left incomplete: counted as not
	// copied).
	mirrorCut = 8 << 20
	// mirrorChunks bounds a connection's queue's length, whatever its
	// bytes.
	mirrorChunks = 1024
	// mirrorReportEvery is how often a session hears of its left-out
	// copies (when there were any).
	mirrorReportEvery = 2 * time.Second
)

// mirrorSink carries the copy of one connection to one mirroring
// session. Its send is called by the connection's reader only.
type mirrorSink struct {
	in          *incoming
	sub         *subscription
	client, dst netip.AddrPort
	frame       mirrorFrame

	copying bool        // the current request is copied
	dead    bool        // the session cannot be reached: no more copies
	out     *mirrorCopy // the stream the copies go to; nil: none open
}

// mirrorCopy is one stream to the session and its writer.
type mirrorCopy struct {
	st     protocol.Stream
	ch     chan []byte
	queued *atomic.Int64 // the subscription's
	once   sync.Once
}

func (in *incoming) mirrorSinks(subs []*subscription, client, dst netip.AddrPort) []*mirrorSink {
	var sinks []*mirrorSink
	for _, s := range subs {
		if s.mode == protocol.ModeMirror {
			sinks = append(sinks, &mirrorSink{in: in, sub: s, client: client, dst: dst})
		}
	}
	return sinks
}

// send copies b, the connection's next bytes, as far as the session
// keeps up.
func (m *mirrorSink) send(b []byte) {
	for len(b) > 0 && !m.dead {
		n, start := m.frame.next(b)
		if start {
			m.begin()
		}
		if m.copying {
			m.write(b[:n])
		}
		b = b[n:]
	}
}

// begin decides whether the request starting now is copied.
func (m *mirrorSink) begin() {
	m.copying = false
	if m.sub.drops.queued.Load() >= mirrorBehind {
		m.sub.mirrorDropped(m.in)
		return
	}
	if !m.sub.drops.rate.take(time.Now()) {
		m.sub.mirrorLimited(m.in)
		return
	}
	if m.out == nil {
		st, err := m.in.deliver(m.sub, m.client, m.dst, true)
		if err != nil {
			m.dead = true
			return
		}
		m.out = &mirrorCopy{st: st, ch: make(chan []byte, mirrorChunks), queued: &m.sub.drops.queued}
		go m.out.run()
		go io.Copy(io.Discard, st) // the local app's answers are not wanted
	}
	m.copying = true
}

func (m *mirrorSink) write(b []byte) {
	out := m.out
	if out.queued.Load()+int64(len(b)) > mirrorCut {
		m.cut()
		return
	}
	out.queued.Add(int64(len(b)))
	select {
	case out.ch <- slices.Clone(b):
	default:
		out.queued.Add(-int64(len(b)))
		m.cut()
	}
}

// cut ends the copy in progress: what was queued is still delivered,
// then the session's side of this connection ends. The next request
// (HTTP/1) opens a new one.
func (m *mirrorSink) cut() {
	m.sub.mirrorDropped(m.in)
	m.copying = false
	m.out.close()
	m.out = nil
	if !m.frame.bounded() {
		m.dead = true // no boundary to resume at
	}
}

// lose ends the copy of a connection whose bytes were not all captured:
// counted as left out.
func (m *mirrorSink) lose() {
	if !m.dead {
		m.sub.mirrorDropped(m.in)
	}
	m.close()
}

// close ends the copy with the connection.
func (m *mirrorSink) close() {
	if m.out != nil {
		m.out.close()
		m.out = nil
	}
	m.dead = true
}

func (c *mirrorCopy) run() {
	for b := range c.ch {
		_, err := c.st.Write(b)
		c.queued.Add(-int64(len(b)))
		if err != nil {
			for b := range c.ch {
				c.queued.Add(-int64(len(b)))
			}
			break
		}
	}
	c.st.CloseWrite()
}

func (c *mirrorCopy) close() { c.once.Do(func() { close(c.ch) }) }

// mirrorFrame finds where the requests of an HTTP/1 connection begin in
// its copied bytes (whatever the reads' sizes); a connection that is not
// HTTP/1 (or stops being: an upgrade, bytes it cannot frame) is one
// request from there on.
type mirrorFrame struct {
	state   frameState
	decided bool   // the connection is HTTP/1 (else raw, once decided)
	head    []byte // the head so far
	left    int64  // the body's bytes left (Length)
	chunks  httpframe.Chunks
}

type frameState int

const (
	frameStart   frameState = iota // before a request's first byte
	frameHead                      // in a head
	frameLength                    // in a Content-Length body
	frameChunked                   // in a chunked body
	frameRaw                       // no more boundaries
)

// bounded reports whether later requests can still be told apart.
func (f *mirrorFrame) bounded() bool { return f.state != frameRaw }

// next returns how many bytes of b belong to the current request (b's
// first bytes) and whether they start a new one.
func (f *mirrorFrame) next(b []byte) (n int, start bool) {
	switch f.state {
	case frameStart:
		start = true
		f.state = frameHead
		f.head = f.head[:0]
		fallthrough
	case frameHead:
		had := len(f.head)
		f.head = append(f.head, b...)
		if !f.decided {
			switch classifyHTTP(f.head) {
			case undecided:
				return len(b), start
			case notHTTP:
				f.state = frameRaw
				return len(b), start
			}
			if bytes.HasPrefix(f.head, []byte(h2Preface)) {
				f.state = frameRaw // HTTP/2: no boundaries this framer knows
				return len(b), start
			}
			f.decided = true
		}
		req, err := httpframe.ParseHead(f.head)
		if errors.Is(err, httpframe.ErrIncomplete) {
			if len(f.head) > httpframe.MaxHead {
				f.state = frameRaw
			}
			return len(b), start
		}
		if err != nil {
			f.state = frameRaw // the app refuses it and ends the connection
			return len(b), start
		}
		n = req.HeadLen - had
		f.head = f.head[:0]
		switch req.Body {
		case httpframe.Length:
			f.state, f.left = frameLength, req.ContentLength
		case httpframe.Chunked:
			f.state, f.chunks = frameChunked, httpframe.Chunks{}
		case httpframe.Tunnel:
			f.state = frameRaw
			return len(b), start // the tunnel's bytes are this request's
		default:
			f.state = frameStart
			return n, start
		}
		m, _ := f.next(b[n:])
		return n + m, start
	case frameLength:
		n = int(min(int64(len(b)), f.left))
		if f.left -= int64(n); f.left == 0 {
			f.state = frameStart
		}
		return n, false
	case frameChunked:
		n, done, err := f.chunks.Scan(b)
		if err != nil {
			f.state = frameRaw
			return len(b), false
		}
		if done {
			f.state = frameStart
		}
		return n, false
	}
	return len(b), false
}

// teeConn copies everything read from the client to mirror sinks.
type teeConn struct {
	*net.TCPConn
	sinks []*mirrorSink
	mu    sync.Mutex // send and close: the reader, and a Close from elsewhere
}

func (t *teeConn) Read(b []byte) (int, error) {
	n, err := t.TCPConn.Read(b)
	t.mu.Lock()
	if n > 0 {
		for _, s := range t.sinks {
			s.send(b[:n])
		}
	}
	if err != nil && !isTimeout(err) {
		// A deadline (the router's HTTP server sets them to stop its
		// background reads) does not end the connection.
		for _, s := range t.sinks {
			s.close()
		}
	}
	t.mu.Unlock()
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// WriteTo hides the embedded TCPConn's WriteTo (splice), which would read
// around the tee.
func (t *teeConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{t})
}

func (t *teeConn) Close() error {
	t.mu.Lock()
	for _, s := range t.sinks {
		s.close()
	}
	t.mu.Unlock()
	return t.TCPConn.Close()
}
