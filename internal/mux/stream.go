package mux

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errReset is what a stream reset by either side gives.
var errReset = fmt.Errorf("stream reset: %w", syscall.ECONNRESET)

// chunkSize is the size of the pooled chunks a stream's received bytes
// are kept in until read.
const chunkSize = 64 << 10

var chunks = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// Stream is one bidirectional byte stream in a Session.
type Stream struct {
	sess *Session
	id   uint32

	mu sync.Mutex
	// Received bytes: bufs[0][roff:], the chunks between, then
	// bufs[last][:wlen].
	bufs       []*[]byte
	roff, wlen int
	buffered   int
	recvWindow uint32 // what the peer may still send
	remoteFin  bool
	localFin   bool
	reset      bool      // by either side
	lost       bool      // the session ended
	lastActive time.Time // data came, or the reader took some
	finTimer   *time.Timer
	readable   chan struct{}
	writing    bool // bytes are being written to the reader's socket, unlocked
	sink       syscall.RawConn
	direct     int64 // bytes receive wrote to sink

	sendWindow uint32
	writable   chan struct{}

	synSent bool        // guarded by sess.wmu
	opened  atomic.Bool // synSent, read without the lock

	rd, wd *deadline
}

func newStream(s *Session, id uint32, accepted bool) *Stream {
	st := &Stream{
		sess:       s,
		id:         id,
		recvWindow: initialWindow,
		sendWindow: initialWindow,
		readable:   make(chan struct{}, 1),
		writable:   make(chan struct{}, 1),
		synSent:    accepted,
		rd:         newDeadline(),
		wd:         newDeadline(),
	}
	st.opened.Store(accepted)
	return st
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// receive takes b, a data frame's payload. When WriteTo waits with a
// socket and nothing is buffered, b goes straight into the socket if it
// takes it all now: the reader is not woken for it. What is left is
// kept for the reader.
func (st *Stream) receive(b []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if uint32(len(b)) > st.recvWindow {
		return &ProtocolError{Reason: fmt.Sprintf("stream %d: %d bytes past its window of %d", st.id, len(b), st.recvWindow)}
	}
	st.recvWindow -= uint32(len(b))
	st.lastActive = time.Now()
	if st.reset || st.lost {
		return nil
	}
	if st.sink != nil && st.buffered == 0 && !st.writing {
		sink := st.sink
		st.writing = true
		st.mu.Unlock()
		n := tryWrite(sink, b)
		st.mu.Lock()
		st.writing = false
		st.direct += int64(n)
		st.sess.directed.Add(int64(n))
		b = b[n:]
		if delta := st.grantLocked(); delta > 0 {
			st.sess.sendCtrl(header{typ: typeWindow, stream: st.id, length: delta})
		}
		if len(b) == 0 || st.reset || st.lost {
			return nil
		}
	}
	st.buffered += len(b)
	for len(b) > 0 {
		if len(st.bufs) == 0 || st.wlen == chunkSize {
			st.bufs = append(st.bufs, chunks.Get().(*[]byte))
			st.wlen = 0
		}
		n := copy((*st.bufs[len(st.bufs)-1])[st.wlen:], b)
		st.wlen += n
		b = b[n:]
	}
	notify(st.readable)
	return nil
}

// readable returns the bytes the reader can take now, without a copy:
// at most the rest of the first chunk.
func (st *Stream) peekLocked() []byte {
	if st.buffered == 0 {
		return nil
	}
	end := chunkSize
	if len(st.bufs) == 1 {
		end = st.wlen
	}
	return (*st.bufs[0])[st.roff:end]
}

// consumeLocked drops n bytes read and returns the window increment to
// grant the peer (grantLocked).
func (st *Stream) consumeLocked(n int) uint32 {
	if st.finTimer != nil {
		st.lastActive = time.Now() // a peer held back by this reader is not quiet
	}
	st.buffered -= n
	st.roff += n
	if len(st.bufs) > 1 && st.roff == chunkSize || len(st.bufs) == 1 && st.roff == st.wlen {
		chunks.Put(st.bufs[0])
		st.bufs[0] = nil
		st.bufs = st.bufs[1:]
		st.roff = 0
		if len(st.bufs) == 0 {
			st.bufs, st.wlen = nil, 0
		}
	}
	return st.grantLocked()
}

// grantLocked is the window increment to grant the peer now (0: none
// yet).
func (st *Stream) grantLocked() uint32 {
	if st.remoteFin || st.reset || st.lost {
		return 0
	}
	// Offer the peer all the room the reader has: once a quarter of it
	// is free again, grant it (few window updates, a full pipe).
	max := st.sess.cfg.MaxWindow
	want := max - uint32(st.buffered)
	if want <= st.recvWindow || want-st.recvWindow < max/4 && st.recvWindow > initialWindow/4 {
		return 0
	}
	delta := want - st.recvWindow
	st.recvWindow = want
	return delta
}

// readErrLocked is why nothing more can be read (nil: more may come).
func (st *Stream) readErrLocked() error {
	switch {
	case st.reset:
		return errReset
	case st.remoteFin:
		return io.EOF
	case st.lost:
		return ErrLost
	}
	return nil
}

// open sends the stream's opening frame if nothing has opened it yet (it
// is about to wait for the peer).
func (st *Stream) open() error {
	if st.opened.Load() {
		return nil
	}
	st.mu.Lock()
	over := st.reset || st.lost
	st.mu.Unlock()
	if over {
		return nil // the peer need not hear of it; reads say why
	}
	return st.sess.write(st, header{typ: typeData, stream: st.id}, nil)
}

func (st *Stream) grantWindow(delta uint32) {
	if delta > 0 {
		st.sess.write(nil, header{typ: typeWindow, stream: st.id, length: delta}, nil)
	}
}

// Read reads what the peer sent.
func (st *Stream) Read(b []byte) (int, error) {
	if err := st.open(); err != nil {
		return 0, err
	}
	for {
		st.mu.Lock()
		if p := st.peekLocked(); p != nil {
			n := copy(b, p)
			delta := st.consumeLocked(n)
			st.mu.Unlock()
			st.grantWindow(delta)
			return n, nil
		}
		err := st.readErrLocked()
		st.mu.Unlock()
		if err != nil || len(b) == 0 {
			return 0, err
		}
		select {
		case <-st.readable:
		case <-st.rd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// WriteTo writes what the peer sends to w, straight from the stream's
// chunks, until the peer half-closes (then it returns nil). When w is a
// socket, the receive loop writes to it directly what it takes without
// waiting: nothing else may write to w meanwhile (its bytes would
// interleave with the stream's anyway), or the receive loop waits for
// that writer.
func (st *Stream) WriteTo(w io.Writer) (total int64, err error) {
	if err := st.open(); err != nil {
		return 0, err
	}
	var bufs net.Buffers
	st.mu.Lock()
	st.sink = rawSink(w)
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.sink = nil
		for st.writing { // a non-blocking write: soon over
			st.mu.Unlock()
			runtime.Gosched()
			st.mu.Lock()
		}
		total += st.direct
		st.direct = 0
		st.mu.Unlock()
	}()
	for {
		st.mu.Lock()
		total += st.direct
		st.direct = 0
		if st.writing {
			// receive is writing to w: it says when it is done.
			st.mu.Unlock()
			select {
			case <-st.readable:
			case <-st.rd.wait():
				return total, os.ErrDeadlineExceeded
			}
			continue
		}
		if st.buffered > 0 {
			// Everything buffered, in one write (writev on a socket).
			bufs = bufs[:0]
			for i, c := range st.bufs {
				start, end := 0, chunkSize
				if i == 0 {
					start = st.roff
				}
				if i == len(st.bufs)-1 {
					end = st.wlen
				}
				bufs = append(bufs, (*c)[start:end])
			}
			// The chunks stay put while they are written: the receive
			// loop only appends, and a reset leaves them to the GC.
			st.writing = true
			st.mu.Unlock()
			wrote, err := bufs.WriteTo(w)
			st.mu.Lock()
			st.writing = false
			var delta uint32
			for wrote > 0 {
				k := min(int(wrote), len(st.peekLocked()))
				if k == 0 {
					break // reset meanwhile
				}
				delta += st.consumeLocked(k)
				wrote -= int64(k)
				total += int64(k)
			}
			st.mu.Unlock()
			st.grantWindow(delta)
			if err != nil {
				return total, err
			}
			continue
		}
		err := st.readErrLocked()
		st.mu.Unlock()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		select {
		case <-st.readable:
		case <-st.rd.wait():
			return total, os.ErrDeadlineExceeded
		}
	}
}

// reserve waits until the peer's window lets up to n bytes be sent, and
// takes them from it.
func (st *Stream) reserve(n int) (int, error) {
	for {
		st.mu.Lock()
		switch {
		case st.reset:
			st.mu.Unlock()
			return 0, errReset
		case st.lost:
			st.mu.Unlock()
			return 0, ErrLost
		case st.localFin:
			st.mu.Unlock()
			return 0, fmt.Errorf("write on a closed stream: %w", net.ErrClosed)
		case st.sendWindow > 0:
			n = min(n, int(st.sendWindow), maxFrame)
			st.sendWindow -= uint32(n)
			st.mu.Unlock()
			return n, nil
		}
		st.mu.Unlock()
		select {
		case <-st.writable:
		case <-st.wd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write sends b to the peer.
func (st *Stream) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		n, err := st.reserve(len(b))
		if err != nil {
			return total, err
		}
		if err := st.sess.write(st, header{typ: typeData, stream: st.id, length: uint32(n)}, b[:n]); err != nil {
			return total, err
		}
		total += n
		b = b[n:]
	}
	return total, nil
}

var frameBufs = sync.Pool{New: func() any { b := make([]byte, headerSize+maxFrame); return &b }}

// ReadFrom sends what r gives until its end, each read straight into a
// frame (no copy).
func (st *Stream) ReadFrom(r io.Reader) (int64, error) {
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := r.Read(buf[headerSize:])
		sent := 0
		for sent < n {
			k, err := st.reserve(n - sent)
			if err != nil {
				return total, err
			}
			h := header{typ: typeData, stream: st.id, length: uint32(k)}
			if sent == 0 && k == n {
				err = st.sess.writeFrame(st, h, buf[:headerSize+n])
			} else {
				err = st.sess.write(st, h, buf[headerSize+sent:headerSize+sent+k])
			}
			if err != nil {
				return total, err
			}
			sent += k
			total += int64(k)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// grantSend takes the peer's window update.
func (st *Stream) grantSend(delta uint32) error {
	st.mu.Lock()
	if uint64(st.sendWindow)+uint64(delta) > maxSendWindow {
		st.mu.Unlock()
		return &ProtocolError{Reason: fmt.Sprintf("stream %d: a window of over %d bytes", st.id, uint64(maxSendWindow))}
	}
	st.sendWindow += delta
	st.mu.Unlock()
	notify(st.writable)
	return nil
}

// maxSendWindow bounds the window a peer may grant (far over any
// Config.MaxWindow), so that it cannot wrap.
const maxSendWindow = 1 << 31

// CloseWrite half-closes the stream: the peer reads its end; reading
// goes on until the peer's.
func (st *Stream) CloseWrite() error {
	st.mu.Lock()
	if st.localFin || st.reset || st.lost {
		st.mu.Unlock()
		return nil
	}
	st.localFin = true
	done := st.remoteFin
	if !done {
		st.lastActive = time.Now()
		st.finTimer = time.AfterFunc(st.sess.cfg.CloseTimeout, st.closeTimeout)
	}
	st.mu.Unlock()
	notify(st.writable)
	err := st.sess.write(st, header{typ: typeData, flags: flagFIN, stream: st.id}, nil)
	if done {
		st.sess.remove(st.id)
	}
	return err
}

// Close is CloseWrite: the stream ends once both sides have closed it
// (or when the peer sends nothing for Config.CloseTimeout after this).
func (st *Stream) Close() error { return st.CloseWrite() }

// closeTimeout resets a stream half-closed here whose peer went quiet.
func (st *Stream) closeTimeout() {
	st.mu.Lock()
	if st.remoteFin || st.reset || st.lost {
		st.mu.Unlock()
		return
	}
	if quiet := time.Since(st.lastActive); quiet < st.sess.cfg.CloseTimeout {
		st.finTimer.Reset(st.sess.cfg.CloseTimeout - quiet)
		st.mu.Unlock()
		return
	}
	st.mu.Unlock()
	st.Reset()
}

// Reset ends the stream both ways at once: the peer's reads and writes
// fail with a reset.
func (st *Stream) Reset() error {
	if !st.resetLocally() {
		return nil
	}
	st.sess.remove(st.id)
	if !st.opened.Load() {
		return nil // the peer never heard of it
	}
	return st.sess.write(st, header{typ: typeData, flags: flagRST, stream: st.id}, nil)
}

// resetLocally marks the stream reset and drops what it holds; false if
// it was over already.
func (st *Stream) resetLocally() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reset || st.lost {
		return false
	}
	st.reset = true
	st.dropLocked()
	return true
}

func (st *Stream) dropLocked() {
	if !st.writing {
		for _, c := range st.bufs {
			chunks.Put(c)
		}
	}
	st.bufs, st.roff, st.wlen, st.buffered = nil, 0, 0, 0
	if st.finTimer != nil {
		st.finTimer.Stop()
	}
	notify(st.readable)
	notify(st.writable)
}

func (st *Stream) resetByPeer() {
	if st.resetLocally() {
		st.sess.remove(st.id)
	}
}

func (st *Stream) finByPeer() {
	st.mu.Lock()
	st.remoteFin = true
	done := st.localFin
	if done && st.finTimer != nil {
		st.finTimer.Stop()
	}
	st.mu.Unlock()
	notify(st.readable)
	if done {
		st.sess.remove(st.id)
	}
}

// lose ends the stream with its session: what was received can still be
// read.
func (st *Stream) lose() {
	st.mu.Lock()
	st.lost = true
	if st.finTimer != nil {
		st.finTimer.Stop()
	}
	st.mu.Unlock()
	notify(st.readable)
	notify(st.writable)
}

// SetDeadline sets both deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	st.rd.set(t)
	st.wd.set(t)
	return nil
}

// SetReadDeadline bounds reads' waits (zero: none).
func (st *Stream) SetReadDeadline(t time.Time) error { st.rd.set(t); return nil }

// SetWriteDeadline bounds writes' waits for the peer's window (zero:
// none).
func (st *Stream) SetWriteDeadline(t time.Time) error { st.wd.set(t); return nil }

// LocalAddr is the session's connection's.
func (st *Stream) LocalAddr() net.Addr { return st.sess.conn.LocalAddr() }

// RemoteAddr is the session's connection's.
func (st *Stream) RemoteAddr() net.Addr { return st.sess.conn.RemoteAddr() }

// ID is the stream's id in its session.
func (st *Stream) ID() uint32 { return st.id }

var _ net.Conn = (*Stream)(nil)
