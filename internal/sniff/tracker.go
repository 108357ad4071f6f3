package sniff

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Handler is told of the connections a Tracker sees start.
type Handler interface {
	// Open is called when a client's SYN to dst is seen. It returns where
	// the connection's bytes go, or nil to leave the connection alone.
	Open(client, dst netip.AddrPort) Stream
}

// Stream receives the bytes one client sends on one connection, in
// order, once each. Exactly one of Lost and Close ends it.
type Stream interface {
	// Data is the connection's next bytes. b is only valid during the
	// call.
	Data(b []byte)
	// Lost: some of the connection's bytes were not captured (the
	// capture fell behind); nothing more comes.
	Lost()
	// Close: the client ended or reset the connection, or it was idle
	// for IdleTimeout, or the tracker was closed.
	Close()
}

// Limits of a Tracker.
const (
	// MaxFlows is how many connections a Tracker follows at once; SYNs
	// beyond it are not followed (counted in Stats.Ignored).
	MaxFlows = 1 << 16
	// maxHeld and maxHeldBytes bound the out-of-order segments held for
	// one connection while it waits for a missing one.
	maxHeld      = 64
	maxHeldBytes = 1 << 20
	// GapTimeout is how long a connection may wait for a missing segment
	// before it is given up as Lost: the app got it, so it will not come
	// again unless the capture merely reordered it.
	GapTimeout = time.Second
	// IdleTimeout ends a connection the capture has heard nothing of
	// (its FIN may have been lost).
	IdleTimeout = 15 * time.Minute
)

// Stats counts what a Tracker did.
type Stats struct {
	Opened, Closed, Lost, Ignored uint64
}

// Tracker follows the TCP connections whose segments it is given (the
// client's side of each) and hands their bytes in order to a Handler's
// Streams. Connections whose SYN it did not see are left alone. It is
// safe for concurrent use.
type Tracker struct {
	h     Handler
	mu    sync.Mutex
	flows map[flowKey]*flow
	stats Stats
}

type flowKey struct{ src, dst netip.AddrPort }

type flow struct {
	st       Stream
	isn      uint32
	next     uint32 // the sequence number of the next byte to deliver
	last     time.Time
	gapSince time.Time // when the first segment past a gap was held
	held     []held    // past a gap, by sequence number
	heldLen  int
}

type held struct {
	seq  uint32
	data []byte
	fin  bool
}

// NewTracker returns a Tracker that opens its Streams with h.
func NewTracker(h Handler) *Tracker {
	return &Tracker{h: h, flows: map[flowKey]*flow{}}
}

// Segment takes one captured segment from a client, seen at now. It is
// called by one goroutine at a time (the capture's). The Handler's Open is
// called without the Tracker's lock held (it may take locks of its own
// under which CloseWhere is called); the Streams' methods with it.
func (t *Tracker) Segment(s Segment, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := flowKey{s.Src, s.Dst}
	f := t.flows[k]
	if s.Flags&FlagRST != 0 {
		if f != nil {
			t.end(k, f)
		}
		return
	}
	if s.Flags&FlagSYN != 0 {
		if s.Flags&FlagACK != 0 {
			return // a server's SYN-ACK
		}
		if f != nil {
			if f.isn == s.Seq {
				return // the SYN again
			}
			t.end(k, f) // the tuple is used again: the old connection is over
		}
		if len(t.flows) >= MaxFlows {
			t.stats.Ignored++
			return
		}
		t.mu.Unlock()
		st := t.h.Open(s.Src, s.Dst)
		t.mu.Lock()
		if st == nil {
			return
		}
		if old := t.flows[k]; old != nil {
			t.end(k, old)
		}
		t.stats.Opened++
		f = &flow{st: st, isn: s.Seq, next: s.Seq + 1, last: now}
		t.flows[k] = f
		s.Seq++ // data in the SYN (TCP Fast Open) comes after it
		if len(s.Payload) == 0 && s.Flags&FlagFIN == 0 {
			return
		}
	}
	if f == nil {
		return
	}
	f.last = now
	t.take(k, f, s.Seq, s.Payload, s.Flags&FlagFIN != 0, now)
}

// take delivers what of data (at seq) is new, or holds it past a gap.
func (t *Tracker) take(k flowKey, f *flow, seq uint32, data []byte, fin bool, now time.Time) {
	if len(data) == 0 && !fin {
		return // an ACK: nothing to deliver or hold
	}
	if d := int32(seq - f.next); d > 0 {
		if !f.hold(seq, data, fin) {
			t.lose(k, f)
			return
		}
		if f.gapSince.IsZero() {
			f.gapSince = now
		}
		return
	}
	from := f.next
	if !t.deliver(k, f, seq, data, fin) {
		return
	}
	for len(f.held) > 0 && int32(f.held[0].seq-f.next) <= 0 {
		h := f.held[0]
		f.held = f.held[1:]
		f.heldLen -= len(h.data)
		if !t.deliver(k, f, h.seq, h.data, h.fin) {
			return
		}
	}
	switch {
	case len(f.held) == 0:
		f.gapSince = time.Time{}
	case f.next != from:
		f.gapSince = now // a gap filled; the segments past the next one wait from now
	}
}

// deliver hands on the bytes of data (at seq, not past f.next) not
// delivered yet, and ends the flow at its FIN. It reports whether the
// flow goes on.
func (t *Tracker) deliver(k flowKey, f *flow, seq uint32, data []byte, fin bool) bool {
	skip := int(f.next - seq) // seq <= f.next
	end := seq + uint32(len(data))
	if skip < len(data) {
		f.st.Data(data[skip:])
		f.next = end
	}
	if fin && end == f.next {
		t.end(k, f)
		return false
	}
	return true
}

// hold keeps a segment past a gap; false when the flow holds too much.
func (f *flow) hold(seq uint32, data []byte, fin bool) bool {
	if len(f.held) >= maxHeld || f.heldLen+len(data) > maxHeldBytes {
		return false
	}
	i, _ := slices.BinarySearchFunc(f.held, seq, func(h held, seq uint32) int { return int(int32(h.seq - seq)) })
	f.held = slices.Insert(f.held, i, held{seq: seq, data: slices.Clone(data), fin: fin})
	f.heldLen += len(data)
	return true
}

func (t *Tracker) end(k flowKey, f *flow) {
	delete(t.flows, k)
	t.stats.Closed++
	f.st.Close()
}

func (t *Tracker) lose(k flowKey, f *flow) {
	delete(t.flows, k)
	t.stats.Lost++
	f.st.Lost()
}

// Sweep gives up the connections waiting for a missing segment longer
// than GapTimeout (Lost) and ends those idle for IdleTimeout (Close).
func (t *Tracker) Sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, f := range t.flows {
		switch {
		case !f.gapSince.IsZero() && now.Sub(f.gapSince) > GapTimeout:
			t.lose(k, f)
		case now.Sub(f.last) > IdleTimeout:
			t.end(k, f)
		}
	}
}

// CloseWhere ends the connections for which drop returns true (those to
// a port no longer watched, say).
func (t *Tracker) CloseWhere(drop func(client, dst netip.AddrPort) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, f := range t.flows {
		if drop(k.src, k.dst) {
			t.end(k, f)
		}
	}
}

// Flows is the number of connections followed.
func (t *Tracker) Flows() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

// Stats returns the tracker's counts so far.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}
