package mux

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrLost is what a stream's reads and writes give once the connection
// to the peer died (a tunnel drop): a reset, never the end of the data,
// so a program whose connection was in flight sees it fail rather than a
// truncated stream that looks complete.
var ErrLost = fmt.Errorf("the connection to the peer was lost: %w", syscall.ECONNRESET)

// Config tunes a session; the zero value takes the defaults.
type Config struct {
	// KeepAlive is how often a ping goes to the peer (default 5 s).
	KeepAlive time.Duration
	// WriteTimeout ends the session when a write to the connection is
	// stuck for longer, or when nothing came from the peer for
	// KeepAlive+WriteTimeout (default 15 s).
	WriteTimeout time.Duration
	// MaxWindow is the most a stream's reader may have buffered, and so
	// the most its peer may send ahead (default 16 MiB: a port-forward's
	// loaded round trip is ~10 ms, and a download runs at its speed).
	// Memory is only used while a reader falls behind.
	MaxWindow uint32
	// CloseTimeout resets a stream half-closed by this side when nothing
	// came from the peer on it for that long (default 1 min).
	CloseTimeout time.Duration
	// AcceptBacklog is how many streams the peer may open ahead of
	// Accept; more are reset (default 1024).
	AcceptBacklog int
}

func (c *Config) defaults() {
	if c.KeepAlive <= 0 {
		c.KeepAlive = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 15 * time.Second
	}
	if c.MaxWindow < initialWindow {
		c.MaxWindow = 16 << 20
	}
	c.MaxWindow = min(c.MaxWindow, maxSendWindow/2)
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = time.Minute
	}
	if c.AcceptBacklog <= 0 {
		c.AcceptBacklog = 1024
	}
}

// initialWindow is what either side may send on a new stream before its
// reader grants more.
const initialWindow = 256 << 10

// Session is one end of a multiplexed connection.
type Session struct {
	conn   net.Conn
	cfg    Config
	client bool
	br     *bufio.Reader

	wmu        sync.Mutex // held for each write to conn
	wbuf       []byte     // the frame being written
	writeStart atomic.Int64

	ctrlMu  sync.Mutex
	ctrl    []byte // encoded control frames waiting for the write lock
	hasCtrl atomic.Bool
	ctrlCh  chan struct{}

	mu      sync.Mutex
	streams map[uint32]*Stream
	nextID  uint32
	err     error // why the session ended; nil while it lives

	accept   chan *Stream
	done     chan struct{}
	lastRecv atomic.Int64
	directed atomic.Int64 // bytes received that went straight to a socket
}

// Client starts the session's client end on conn (its streams have odd
// ids); Server the server end (even ids). The session owns conn.
func Client(conn net.Conn, cfg Config) *Session { return newSession(conn, cfg, true) }

// Server: see Client.
func Server(conn net.Conn, cfg Config) *Session { return newSession(conn, cfg, false) }

func newSession(conn net.Conn, cfg Config, client bool) *Session {
	cfg.defaults()
	s := &Session{
		conn:    conn,
		cfg:     cfg,
		client:  client,
		br:      bufio.NewReaderSize(conn, 2*maxFrame),
		wbuf:    make([]byte, 0, headerSize+maxFrame),
		ctrlCh:  make(chan struct{}, 1),
		streams: map[uint32]*Stream{},
		nextID:  2,
		accept:  make(chan *Stream, cfg.AcceptBacklog),
		done:    make(chan struct{}),
	}
	if client {
		s.nextID = 1
	}
	s.lastRecv.Store(now())
	go s.recvLoop()
	go s.ctrlLoop()
	go s.keepAlive()
	return s
}

func now() int64 { return time.Now().UnixNano() }

// Open starts a stream to the peer. Nothing is sent until the stream is
// first written to, read from or closed: its first frame opens it.
func (s *Session) Open() (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, ErrLost
	}
	if s.nextID >= 1<<31 {
		return nil, errors.New("stream multiplexer: stream ids used up on this connection (reconnect)")
	}
	st := newStream(s, s.nextID, false)
	s.nextID += 2
	s.streams[st.id] = st
	return st, nil
}

// Accept waits for the peer to open a stream.
func (s *Session) Accept() (*Stream, error) {
	select {
	case st := <-s.accept:
		return st, nil
	case <-s.done:
		// Streams opened before the end are still handed out.
		select {
		case st := <-s.accept:
			return st, nil
		default:
		}
		return nil, ErrLost
	}
}

// Close ends the session and every stream in it.
func (s *Session) Close() error {
	s.fail(nil)
	return nil
}

// Done is closed once the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended (nil while it lives, or after Close).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, errClosed) {
		return nil
	}
	return s.err
}

// NumStreams is the number of streams open in the session.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

var errClosed = errors.New("closed")

var zeroHeader [headerSize]byte

// fail ends the session: err says why (nil: Close).
func (s *Session) fail(err error) {
	if err == nil {
		err = errClosed
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	streams := s.streams
	s.streams = map[uint32]*Stream{}
	s.mu.Unlock()
	s.conn.Close()
	for _, st := range streams {
		st.lose()
	}
	close(s.done)
}

func (s *Session) remove(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
}

// write sends one frame: h, then payload, in one write to the connection
// with any control frames waiting before it.
func (s *Session) write(st *Stream, h header, payload []byte) error {
	s.wmu.Lock()
	if st != nil && !st.synSent {
		h.flags |= flagSYN
		st.synSent = true
		st.opened.Store(true)
	}
	b := s.takeCtrl(s.wbuf[:0])
	n := len(b)
	b = append(b, zeroHeader[:]...)
	h.put(b[n:])
	b = append(b, payload...)
	err := s.writeLocked(b)
	s.wbuf = b[:0]
	s.wmu.Unlock()
	s.flushCtrl()
	return err
}

// writeFrame sends a data frame already laid out in b: room for its
// header, then its payload (Stream.ReadFrom reads into it, no copy).
func (s *Session) writeFrame(st *Stream, h header, b []byte) error {
	s.wmu.Lock()
	if !st.synSent {
		h.flags |= flagSYN
		st.synSent = true
		st.opened.Store(true)
	}
	var err error
	if s.hasCtrl.Load() {
		err = s.writeLocked(s.takeCtrl(s.wbuf[:0]))
	}
	h.put(b)
	if err == nil {
		err = s.writeLocked(b)
	}
	s.wmu.Unlock()
	s.flushCtrl()
	return err
}

// writeLocked writes b with wmu held; an error ends the session.
func (s *Session) writeLocked(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	s.writeStart.Store(now())
	_, err := s.conn.Write(b)
	s.writeStart.Store(0)
	if err != nil {
		s.fail(fmt.Errorf("writing to the peer: %w", err))
		return ErrLost
	}
	return nil
}

// sendCtrl queues a control frame (a ping's answer, a reset): it goes out
// with the next write, or from ctrlLoop. It never blocks, so the receive
// loop can send it: a receive loop that waited to write could deadlock
// with its peer's doing the same.
func (s *Session) sendCtrl(h header) {
	var b [headerSize]byte
	h.put(b[:])
	s.ctrlMu.Lock()
	s.ctrl = append(s.ctrl, b[:]...)
	s.hasCtrl.Store(true)
	s.ctrlMu.Unlock()
	select {
	case s.ctrlCh <- struct{}{}:
	default:
	}
}

// takeCtrl appends the waiting control frames to b.
func (s *Session) takeCtrl(b []byte) []byte {
	if !s.hasCtrl.Load() {
		return b
	}
	s.ctrlMu.Lock()
	b = append(b, s.ctrl...)
	s.ctrl = s.ctrl[:0]
	s.hasCtrl.Store(false)
	s.ctrlMu.Unlock()
	return b
}

// flushCtrl wakes ctrlLoop when control frames were queued while the
// write lock was held (their writer may have missed them).
func (s *Session) flushCtrl() {
	if s.hasCtrl.Load() {
		select {
		case s.ctrlCh <- struct{}{}:
		default:
		}
	}
}

func (s *Session) ctrlLoop() {
	for {
		select {
		case <-s.done:
			return
		case <-s.ctrlCh:
		}
		if !s.hasCtrl.Load() {
			continue
		}
		s.wmu.Lock()
		b := s.takeCtrl(s.wbuf[:0])
		s.writeLocked(b)
		s.wbuf = b[:0]
		s.wmu.Unlock()
	}
}

// keepAlive pings the peer, and ends the session when a write is stuck
// or the peer went quiet (a dead tunnel often neither errors nor ends).
func (s *Session) keepAlive() {
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		n := now()
		if ws := s.writeStart.Load(); ws != 0 && time.Duration(n-ws) > s.cfg.WriteTimeout {
			s.fail(fmt.Errorf("a write to the peer has been stuck for over %v", s.cfg.WriteTimeout))
			return
		}
		if quiet := time.Duration(n - s.lastRecv.Load()); quiet > s.cfg.KeepAlive+s.cfg.WriteTimeout {
			s.fail(fmt.Errorf("nothing came from the peer for %v (keepalive)", quiet.Truncate(time.Millisecond)))
			return
		}
		s.sendCtrl(header{typ: typePing, length: uint32(n)})
	}
}

// recvLoop reads frames until the connection ends.
func (s *Session) recvLoop() {
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(s.br, hb[:]); err != nil {
			s.fail(fmt.Errorf("reading from the peer: %w", err))
			return
		}
		s.lastRecv.Store(now())
		h, err := parseHeader(hb[:])
		if err == nil {
			switch h.typ {
			case typeData:
				err = s.onData(h)
			case typeWindow:
				if st := s.lookup(h.stream); st != nil {
					err = st.grantSend(h.length)
				}
			case typePing:
				if h.flags&flagACK == 0 {
					s.sendCtrl(header{typ: typePing, flags: flagACK, length: h.length})
				}
			}
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

func (s *Session) lookup(id uint32) *Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[id]
}

// onData takes a data frame: it may open the stream, carry bytes, and
// half-close or reset it.
func (s *Session) onData(h header) error {
	n := int(h.length)
	var st *Stream
	if h.flags&flagSYN != 0 {
		if (h.stream%2 == 1) == s.client {
			return &ProtocolError{Reason: fmt.Sprintf("the peer opened stream %d, an id of this side's", h.stream)}
		}
		s.mu.Lock()
		if s.streams[h.stream] != nil {
			s.mu.Unlock()
			return &ProtocolError{Reason: fmt.Sprintf("stream %d opened twice", h.stream)}
		}
		st = newStream(s, h.stream, true)
		s.streams[h.stream] = st
		s.mu.Unlock()
		select {
		case s.accept <- st:
		default:
			// Too many waiting for Accept: refused.
			s.remove(h.stream)
			s.sendCtrl(header{typ: typeData, flags: flagRST, stream: h.stream})
			_, err := s.br.Discard(n)
			return err
		}
	} else if st = s.lookup(h.stream); st == nil {
		// A stream already reset or ended here: its bytes go nowhere.
		if h.flags&flagRST == 0 && n > 0 {
			s.sendCtrl(header{typ: typeData, flags: flagRST, stream: h.stream})
		}
		_, err := s.br.Discard(n)
		return err
	}
	if n > 0 {
		b, err := s.br.Peek(n)
		if err != nil {
			return err
		}
		if err := st.receive(b); err != nil {
			return err
		}
		s.br.Discard(n)
	}
	if h.flags&flagRST != 0 {
		st.resetByPeer()
	} else if h.flags&flagFIN != 0 {
		st.finByPeer()
	}
	return nil
}
