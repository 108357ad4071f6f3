package sniff

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeStream records what a Tracker tells it.
type fakeStream struct {
	client, dst netip.AddrPort
	data        []byte
	datas       int // Data calls
	lost        int // Lost calls
	closed      int // Close calls
	late        int // calls after Lost or Close
}

func (s *fakeStream) ended() bool { return s.lost+s.closed > 0 }

func (s *fakeStream) Data(b []byte) {
	if s.ended() {
		s.late++
	}
	s.datas++
	s.data = append(s.data, b...)
}

func (s *fakeStream) Lost() {
	if s.ended() {
		s.late++
	}
	s.lost++
}

func (s *fakeStream) Close() {
	if s.ended() {
		s.late++
	}
	s.closed++
}

// fakeHandler opens fakeStreams, except to the ports in refuse.
type fakeHandler struct {
	refuse  map[uint16]bool
	opens   int // Open calls, refused or not
	streams []*fakeStream
	onOpen  func() // when set, called first by Open
}

func (h *fakeHandler) Open(client, dst netip.AddrPort) Stream {
	if h.onOpen != nil {
		h.onOpen()
	}
	h.opens++
	if h.refuse[dst.Port()] {
		return nil
	}
	s := &fakeStream{client: client, dst: dst}
	h.streams = append(h.streams, s)
	return s
}

// feed gives s to tr as a capture would: the payload is only valid during
// the call, so it is overwritten after.
func feed(tr *Tracker, s Segment, now time.Time) {
	buf := slices.Clone(s.Payload)
	s.Payload = buf
	tr.Segment(s, now)
	for i := range buf {
		buf[i] = 'X'
	}
}

// clientSeg is a segment from v4Client to v4Server.
func clientSeg(seq uint32, flags uint8, data string) Segment {
	return Segment{Src: v4Client, Dst: v4Server, Seq: seq, Flags: flags, Payload: []byte(data)}
}

// step is a segment of a test connection, its sequence number relative to
// the connection's ISN (the SYN is at 0, the first byte at 1).
type step struct {
	off   uint32
	flags uint8
	data  string
	alt   bool // relative to the test's isn2 instead
}

type wantStream struct {
	data         string
	closed, lost int
}

const ack = FlagACK | 0x08 // ACK, PSH

func TestTrackerSegment(t *testing.T) {
	syn := step{off: 0, flags: FlagSYN}
	// held returns a SYN then n one-byte segments past a one-byte gap,
	// then the missing byte.
	held := func(n int) []step {
		steps := []step{syn}
		for i := range n {
			steps = append(steps, step{off: uint32(2 + i), flags: ack, data: string(rune('b' + i%26))})
		}
		return append(steps, step{off: 1, flags: ack, data: "a"})
	}
	heldData := func(n int) string {
		var b strings.Builder
		b.WriteByte('a')
		for i := range n {
			b.WriteRune(rune('b' + i%26))
		}
		return b.String()
	}
	half := strings.Repeat("h", maxHeldBytes/2)
	// again returns a SYN then, three times, half of maxHeldBytes past a
	// one-byte gap, then the missing byte: what is delivered no longer
	// counts as held.
	again := func() []step {
		steps := []step{syn}
		off := uint32(1)
		for range 3 {
			steps = append(steps, step{off + 1, ack, half, false}, step{off, ack, "g", false})
			off += 1 + uint32(len(half))
		}
		return steps
	}

	tests := []struct {
		name   string
		isn    uint32
		isn2   uint32
		refuse bool // the Handler returns nil
		steps  []step
		opens  int // Open calls
		want   []wantStream
		flows  int
	}{
		{
			name:  "in order",
			isn:   1000,
			steps: []step{syn, {1, ack, "hello ", false}, {7, ack, "world", false}},
			opens: 1, want: []wantStream{{data: "hello world"}}, flows: 1,
		},
		{
			name:  "SYN only",
			isn:   1000,
			steps: []step{syn},
			opens: 1, want: []wantStream{{}}, flows: 1,
		},
		{
			name:  "retransmission overlapping delivered bytes",
			isn:   1000,
			steps: []step{syn, {1, ack, "hello", false}, {3, ack, "llo, wo", false}, {1, ack, "hello, world", false}},
			opens: 1, want: []wantStream{{data: "hello, world"}}, flows: 1,
		},
		{
			name:  "duplicates",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {1, ack, "abc", false}, {4, ack, "def", false}, {4, ack, "def", false}, {1, ack, "abc", false}, {2, ack, "b", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "pure ACKs",
			isn:   1000,
			steps: []step{syn, {1, FlagACK, "", false}, {1, ack, "abc", false}, {4, FlagACK, "", false}, {4, FlagACK, "", false}, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "keepalive (one old byte)",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {3, FlagACK, "Z", false}, {3, FlagACK, "", false}, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "out of order then the missing one",
			isn:   1000,
			steps: []step{syn, {4, ack, "def", false}, {7, ack, "ghi", false}, {4, ack, "def", false}, {1, ack, "abc", false}},
			opens: 1, want: []wantStream{{data: "abcdefghi"}}, flows: 1,
		},
		{
			name:  "reverse order",
			isn:   1000,
			steps: []step{syn, {7, ack, "ghi", false}, {4, ack, "def", false}, {1, ack, "abc", false}, {10, ack, "j", false}},
			opens: 1, want: []wantStream{{data: "abcdefghij"}}, flows: 1,
		},
		{
			name:  "held segments overlapping each other and the missing one",
			isn:   1000,
			steps: []step{syn, {5, ack, "efgh", false}, {3, ack, "cdef", false}, {8, ack, "hij", false}, {1, ack, "abcde", false}},
			opens: 1, want: []wantStream{{data: "abcdefghij"}}, flows: 1,
		},
		{
			name:  "two gaps, the later filled first",
			isn:   1000,
			steps: []step{syn, {3, ack, "c", false}, {5, ack, "e", false}, {4, ack, "d", false}, {1, ack, "a", false}, {2, ack, "b", false}},
			opens: 1, want: []wantStream{{data: "abcde"}}, flows: 1,
		},
		{
			name:  "a gap not filled",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {7, ack, "ghi", false}},
			opens: 1, want: []wantStream{{data: "abc"}}, flows: 1,
		},
		{
			name:  "FIN in order",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {4, FlagFIN | FlagACK, "", false}},
			opens: 1, want: []wantStream{{data: "abc", closed: 1}}, flows: 0,
		},
		{
			name:  "FIN with data",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {4, FlagFIN | ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef", closed: 1}}, flows: 0,
		},
		{
			name:  "FIN retransmitted with data overlapping",
			isn:   1000,
			steps: []step{syn, {1, ack, "abcd", false}, {3, FlagFIN | ack, "cdef", false}},
			opens: 1, want: []wantStream{{data: "abcdef", closed: 1}}, flows: 0,
		},
		{
			name:  "FIN past a gap waits",
			isn:   1000,
			steps: []step{syn, {4, FlagFIN | ack, "def", false}},
			opens: 1, want: []wantStream{{}}, flows: 1,
		},
		{
			name:  "FIN past a gap ends the stream when the gap is filled",
			isn:   1000,
			steps: []step{syn, {4, FlagFIN | ack, "def", false}, {1, ack, "abc", false}},
			opens: 1, want: []wantStream{{data: "abcdef", closed: 1}}, flows: 0,
		},
		{
			name:  "empty FIN past a gap",
			isn:   1000,
			steps: []step{syn, {7, FlagFIN | FlagACK, "", false}, {4, ack, "def", false}, {1, ack, "abc", false}},
			opens: 1, want: []wantStream{{data: "abcdef", closed: 1}}, flows: 0,
		},
		{
			name:  "segments after the FIN are ignored",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {4, FlagFIN | FlagACK, "", false}, {4, FlagFIN | FlagACK, "", false}, {4, ack, "def", false}, {5, FlagACK, "", false}, {0, FlagRST, "", false}},
			opens: 1, want: []wantStream{{data: "abc", closed: 1}}, flows: 0,
		},
		{
			name:  "RST closes",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {4, FlagRST, "", false}, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abc", closed: 1}}, flows: 0,
		},
		{
			name:  "RST ACK closes",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {4, FlagRST | FlagACK, "", false}},
			opens: 1, want: []wantStream{{data: "abc", closed: 1}}, flows: 0,
		},
		{
			name:  "RST of a connection not followed",
			isn:   1000,
			steps: []step{{4, FlagRST, "", false}},
			opens: 0, flows: 0,
		},
		{
			name:  "SYN retransmitted changes nothing",
			isn:   1000,
			steps: []step{syn, syn, {1, ack, "abc", false}, syn, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "SYN retransmitted while a gap is held",
			isn:   1000,
			steps: []step{syn, {4, ack, "def", false}, syn, {1, ack, "abc", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name: "the tuple again with a new ISN",
			isn:  1000, isn2: 3_000_000_000,
			steps: []step{syn, {1, ack, "old", false}, {0, FlagSYN, "", true}, {1, ack, "new", true}, {4, ack, "old2", false}},
			opens: 2, want: []wantStream{{data: "old", closed: 1}, {data: "new"}}, flows: 1,
		},
		{
			name: "the tuple again with a new ISN while a gap is held",
			isn:  1000, isn2: 3_000_000_000,
			steps: []step{syn, {1, ack, "a", false}, {3, ack, "c", false}, {0, FlagSYN, "", true}, {1, ack, "new", true}},
			opens: 2, want: []wantStream{{data: "a", closed: 1}, {data: "new"}}, flows: 1,
		},
		{
			name:  "data in the SYN (TCP Fast Open)",
			isn:   1000,
			steps: []step{{0, FlagSYN, "hello", false}, {6, ack, ", world", false}},
			opens: 1, want: []wantStream{{data: "hello, world"}}, flows: 1,
		},
		{
			name:  "TCP Fast Open SYN retransmitted",
			isn:   1000,
			steps: []step{{0, FlagSYN, "hello", false}, {0, FlagSYN, "hello", false}, {1, ack, "hello, world", false}},
			opens: 1, want: []wantStream{{data: "hello, world"}}, flows: 1,
		},
		{
			name:  "TCP Fast Open, data past a gap",
			isn:   1000,
			steps: []step{{0, FlagSYN, "ab", false}, {4, ack, "de", false}, {3, ack, "c", false}},
			opens: 1, want: []wantStream{{data: "abcde"}}, flows: 1,
		},
		{
			name:  "SYN with data and FIN",
			isn:   1000,
			steps: []step{{0, FlagSYN | FlagFIN, "bye", false}},
			opens: 1, want: []wantStream{{data: "bye", closed: 1}}, flows: 0,
		},
		{
			name:  "SYN never seen",
			isn:   1000,
			steps: []step{{1, ack, "abc", false}, {4, ack, "def", false}, {7, FlagFIN | FlagACK, "", false}},
			opens: 0, flows: 0,
		},
		{
			name:   "the Handler leaves the connection alone",
			isn:    1000,
			refuse: true,
			steps:  []step{syn, {1, ack, "abc", false}, {4, FlagFIN | FlagACK, "", false}},
			opens:  1, flows: 0,
		},
		{
			name:  "SYN-ACK ignored",
			isn:   1000,
			steps: []step{{0, FlagSYN | FlagACK, "", false}, {1, ack, "abc", false}},
			opens: 0, flows: 0,
		},
		{
			name:  "SYN-ACK of a connection followed",
			isn:   1000,
			steps: []step{syn, {1, ack, "abc", false}, {500, FlagSYN | FlagACK, "", false}, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "sequence numbers wrap",
			isn:   math.MaxUint32 - 3,
			steps: []step{syn, {1, ack, "ab", false}, {3, ack, "cd", false}, {5, ack, "ef", false}, {7, FlagFIN | FlagACK, "", false}},
			opens: 1, want: []wantStream{{data: "abcdef", closed: 1}}, flows: 0,
		},
		{
			name:  "sequence numbers wrap, out of order",
			isn:   math.MaxUint32 - 3,
			steps: []step{syn, {7, FlagFIN | FlagACK, "", false}, {5, ack, "ef", false}, {3, ack, "cd", false}, {2, ack, "bc", false}, {1, ack, "ab", false}},
			opens: 1, want: []wantStream{{data: "abcdef", closed: 1}}, flows: 0,
		},
		{
			name:  "ISN 2^32-1",
			isn:   math.MaxUint32,
			steps: []step{syn, {1, ack, "abc", false}, {1, ack, "abc", false}, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "SYN at 2^32-1 with data",
			isn:   math.MaxUint32,
			steps: []step{{0, FlagSYN, "abc", false}, {4, ack, "def", false}},
			opens: 1, want: []wantStream{{data: "abcdef"}}, flows: 1,
		},
		{
			name:  "maxHeld segments held",
			isn:   1000,
			steps: held(maxHeld),
			opens: 1, want: []wantStream{{data: heldData(maxHeld)}}, flows: 1,
		},
		{
			name:  "more than maxHeld segments held",
			isn:   1000,
			steps: held(maxHeld + 1),
			opens: 1, want: []wantStream{{lost: 1}}, flows: 0,
		},
		{
			name:  "maxHeldBytes held",
			isn:   1000,
			steps: []step{syn, {2, ack, half, false}, {2 + maxHeldBytes/2, ack, half, false}, {1, ack, "a", false}},
			opens: 1, want: []wantStream{{data: "a" + half + half}}, flows: 1,
		},
		{
			name:  "maxHeldBytes held, in turns",
			isn:   1000,
			steps: again(),
			opens: 1, want: []wantStream{{data: strings.Repeat("g"+half, 3)}}, flows: 1,
		},
		{
			name:  "more than maxHeldBytes held",
			isn:   1000,
			steps: []step{syn, {2, ack, half, false}, {2 + maxHeldBytes/2, ack, half + "x", false}, {1, ack, "a", false}},
			opens: 1, want: []wantStream{{lost: 1}}, flows: 0,
		},
		{
			name:  "in order data after Lost is ignored",
			isn:   1000,
			steps: append(held(maxHeld+1), step{2, ack, "bcd", false}, step{1, FlagFIN | ack, "a", false}),
			opens: 1, want: []wantStream{{lost: 1}}, flows: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHandler{}
			if tc.refuse {
				h.refuse = map[uint16]bool{v4Server.Port(): true}
			}
			tr := NewTracker(h)
			now := time.Unix(1e9, 0)
			for _, s := range tc.steps {
				isn := tc.isn
				if s.alt {
					isn = tc.isn2
				}
				feed(tr, clientSeg(isn+s.off, s.flags, s.data), now)
				now = now.Add(time.Millisecond)
			}
			if h.opens != tc.opens {
				t.Errorf("Open called %d times, want %d", h.opens, tc.opens)
			}
			if len(h.streams) != len(tc.want) {
				t.Fatalf("%d streams, want %d", len(h.streams), len(tc.want))
			}
			for i, s := range h.streams {
				w := tc.want[i]
				if string(s.data) != w.data {
					t.Errorf("stream %d: data %q, want %q", i, trunc(s.data), trunc([]byte(w.data)))
				}
				if s.closed != w.closed || s.lost != w.lost {
					t.Errorf("stream %d: Close %d times, Lost %d times; want %d, %d", i, s.closed, s.lost, w.closed, w.lost)
				}
				if s.late != 0 {
					t.Errorf("stream %d: %d calls after it ended", i, s.late)
				}
				if s.client != v4Client || s.dst != v4Server {
					t.Errorf("stream %d opened for %v → %v", i, s.client, s.dst)
				}
			}
			if n := tr.Flows(); n != tc.flows {
				t.Errorf("Flows() = %d, want %d", n, tc.flows)
			}
		})
	}
}

// A Tracker copies the segments it holds: the capture reuses its buffers.
func TestTrackerHeldDataIsCopied(t *testing.T) {
	h := &fakeHandler{}
	tr := NewTracker(h)
	now := time.Unix(1e9, 0)
	tr.Segment(clientSeg(10, FlagSYN, ""), now)
	buf := []byte("def")
	s := clientSeg(14, ack, "")
	s.Payload = buf
	tr.Segment(s, now)
	copy(buf, "XYZ")
	tr.Segment(clientSeg(11, ack, "abc"), now)
	if got := string(h.streams[0].data); got != "abcdef" {
		t.Errorf("data %q, want %q", got, "abcdef")
	}
}

// start returns a Tracker following one connection from v4Client (ISN
// 1000), opened at now.
func start(t *testing.T, now time.Time) (*Tracker, *fakeStream) {
	t.Helper()
	h := &fakeHandler{}
	tr := NewTracker(h)
	tr.Segment(clientSeg(1000, FlagSYN, ""), now)
	if len(h.streams) != 1 {
		t.Fatalf("%d streams after a SYN, want 1", len(h.streams))
	}
	return tr, h.streams[0]
}

func TestTrackerSweepGap(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	tests := []struct {
		name   string
		fill   bool          // the gap is filled before the sweep
		after  time.Duration // the sweep, after the segment past the gap
		lost   bool
		closed bool
	}{
		{name: "at once", after: 0},
		{name: "just before GapTimeout", after: GapTimeout - time.Nanosecond},
		{name: "at GapTimeout", after: GapTimeout},
		{name: "past GapTimeout", after: GapTimeout + time.Nanosecond, lost: true},
		{name: "long past GapTimeout", after: time.Hour, lost: true},
		{name: "filled, past GapTimeout", fill: true, after: GapTimeout + time.Millisecond},
		{name: "filled, past IdleTimeout", fill: true, after: IdleTimeout + time.Second, closed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, st := start(t, t0)
			gap := t0.Add(time.Second)
			tr.Segment(clientSeg(1004, ack, "def"), gap)
			if tc.fill {
				tr.Segment(clientSeg(1001, ack, "abc"), gap.Add(time.Millisecond))
			}
			tr.Sweep(gap.Add(tc.after))
			if lost := st.lost == 1; lost != tc.lost || st.lost > 1 {
				t.Errorf("Lost %d times, want lost %v", st.lost, tc.lost)
			}
			if closed := st.closed == 1; closed != tc.closed || st.closed > 1 {
				t.Errorf("Close %d times, want closed %v", st.closed, tc.closed)
			}
			ended := tc.lost || tc.closed
			if n := tr.Flows(); (n == 0) != ended {
				t.Errorf("Flows() = %d after the sweep", n)
			}
			// Whatever the sweep did, filling the gap now delivers all or
			// nothing more.
			tr.Segment(clientSeg(1001, ack, "abc"), gap.Add(tc.after))
			want := "abcdef"
			if ended && !tc.fill {
				want = ""
			}
			if string(st.data) != want {
				t.Errorf("data %q, want %q", st.data, want)
			}
			if st.late != 0 {
				t.Errorf("%d calls after the stream ended", st.late)
			}
		})
	}
}

// A sweep gives up a connection only when one missing segment was waited
// for longer than GapTimeout, not when the connection has had some gap or
// other for that long while the capture kept filling them: a capture that
// reorders steadily (each segment late by one) must not lose the
// connection.
func TestTrackerSweepGapTimerFollowsProgress(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	tr, st := start(t, t0)
	const isn = 1000
	b := func(i int) string { return string(rune('a' + i%26)) }
	var want strings.Builder
	// Arrivals 2, 4, 1, 6, 3, 8, 5, ...: each missing byte comes 10ms
	// after the one past it, but one byte is always held.
	now := t0
	tr.Segment(clientSeg(isn+2, ack, b(2)), now)
	const steps = 300 // 3s
	for k := 1; k <= steps; k++ {
		now = now.Add(5 * time.Millisecond)
		tr.Segment(clientSeg(isn+uint32(2*k+2), ack, b(2*k+2)), now)
		now = now.Add(5 * time.Millisecond)
		tr.Segment(clientSeg(isn+uint32(2*k-1), ack, b(2*k-1)), now)
		tr.Sweep(now)
		if st.lost != 0 {
			t.Fatalf("Lost after %v of steady reordering, each gap filled within 10ms", now.Sub(t0))
		}
	}
	for i := 1; i <= 2*steps; i++ {
		want.WriteString(b(i))
	}
	if string(st.data) != want.String() {
		t.Errorf("data %q, want %q", trunc(st.data), trunc([]byte(want.String())))
	}
	// Now the byte 2*steps+1 is missing for good.
	tr.Sweep(now.Add(GapTimeout / 2))
	if st.lost != 0 {
		t.Errorf("Lost %v after the last gap opened", GapTimeout/2)
	}
	tr.Sweep(now.Add(2 * GapTimeout))
	if st.lost != 1 {
		t.Errorf("Lost %d times %v after the last gap opened, want 1", st.lost, 2*GapTimeout)
	}
}

// A segment that delivers nothing new (a duplicate of bytes already
// delivered) does not fill the gap: the segments past it have waited since
// they came, and the connection is Lost GapTimeout after.
func TestTrackerSweepGapTimerNotRestartedByDuplicates(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	tr, st := start(t, t0)
	tr.Segment(clientSeg(1001, ack, "abc"), t0)
	tr.Segment(clientSeg(1007, ack, "ghi"), t0) // 1004-1006 never come
	now := t0
	for range 10 {
		now = now.Add(300 * time.Millisecond)
		tr.Segment(clientSeg(1001, ack, "abc"), now)
		tr.Sweep(now)
	}
	if st.lost != 1 {
		t.Errorf("Lost %d times %v after the gap opened (duplicates of delivered bytes meanwhile), want 1", st.lost, now.Sub(t0))
	}
	if string(st.data) != "abc" {
		t.Errorf("data %q, want %q", st.data, "abc")
	}
}

func TestTrackerSweepIdle(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	last := t0.Add(time.Minute)
	tests := []struct {
		name   string
		at     time.Time
		closed bool
	}{
		{"soon", last.Add(time.Second), false},
		{"at IdleTimeout after the SYN", t0.Add(IdleTimeout + time.Second), false},
		{"at IdleTimeout", last.Add(IdleTimeout), false},
		{"past IdleTimeout", last.Add(IdleTimeout + time.Nanosecond), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, st := start(t, t0)
			tr.Segment(clientSeg(1001, ack, "abc"), last)
			tr.Sweep(tc.at)
			if closed := st.closed == 1; closed != tc.closed || st.closed > 1 || st.lost != 0 {
				t.Errorf("Close %d times, Lost %d times; want closed %v", st.closed, st.lost, tc.closed)
			}
			want := 1
			if tc.closed {
				want = 0
			}
			if n := tr.Flows(); n != want {
				t.Errorf("Flows() = %d, want %d", n, want)
			}
		})
	}
}

// Any segment, even a pure ACK, shows the connection is alive.
func TestTrackerSweepIdleAfterACK(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	tr, st := start(t, t0)
	tr.Segment(clientSeg(1001, FlagACK, ""), t0.Add(IdleTimeout))
	tr.Sweep(t0.Add(IdleTimeout + time.Minute))
	if st.closed != 0 {
		t.Error("closed as idle, though a segment came IdleTimeout after the SYN")
	}
}

func TestTrackerCloseWhere(t *testing.T) {
	now := time.Unix(1e9, 0)
	h := &fakeHandler{}
	tr := NewTracker(h)
	a := netip.MustParseAddrPort("10.0.0.1:40000")
	b := netip.MustParseAddrPort("10.0.0.2:40000")
	web := netip.MustParseAddrPort("10.0.0.9:80")
	tls := netip.MustParseAddrPort("10.0.0.9:443")
	conns := []struct{ client, dst netip.AddrPort }{{a, web}, {b, web}, {a, tls}}
	for _, c := range conns {
		tr.Segment(Segment{Src: c.client, Dst: c.dst, Seq: 1, Flags: FlagSYN}, now)
	}
	if len(h.streams) != len(conns) {
		t.Fatalf("%d streams, want %d", len(h.streams), len(conns))
	}
	var asked int
	tr.CloseWhere(func(client, dst netip.AddrPort) bool {
		asked++
		return dst.Port() == 80
	})
	if asked != len(conns) {
		t.Errorf("drop called %d times, want %d", asked, len(conns))
	}
	for i, s := range h.streams {
		want := 0
		if s.dst == web {
			want = 1
		}
		if s.closed != want || s.lost != 0 {
			t.Errorf("stream %d (%v → %v): Close %d times, Lost %d times; want Close %d", i, s.client, s.dst, s.closed, s.lost, want)
		}
	}
	if n := tr.Flows(); n != 1 {
		t.Errorf("Flows() = %d, want 1", n)
	}
	// The connections closed are no longer followed; the other one is.
	for _, c := range conns {
		tr.Segment(Segment{Src: c.client, Dst: c.dst, Seq: 2, Flags: ack, Payload: []byte("x")}, now)
	}
	for i, s := range h.streams {
		want := ""
		if s.dst == tls {
			want = "x"
		}
		if string(s.data) != want {
			t.Errorf("stream %d: data %q, want %q", i, s.data, want)
		}
	}
	if st := tr.Stats(); st.Closed != 2 {
		t.Errorf("Stats().Closed = %d, want 2", st.Closed)
	}
}

func TestTrackerStats(t *testing.T) {
	now := time.Unix(1e9, 0)
	h := &fakeHandler{refuse: map[uint16]bool{9: true}}
	tr := NewTracker(h)
	srv := netip.MustParseAddr("10.0.0.9")
	client := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(40000+i))
	}
	seg := func(i int, port uint16, seq uint32, flags uint8, data string) {
		tr.Segment(Segment{Src: client(i), Dst: netip.AddrPortFrom(srv, port), Seq: seq, Flags: flags, Payload: []byte(data)}, now)
	}
	check := func(when string, want Stats) {
		t.Helper()
		if got := tr.Stats(); got != want {
			t.Errorf("%s: Stats() = %+v, want %+v", when, got, want)
		}
	}
	check("at first", Stats{})
	for i := range 5 {
		seg(i, 80, 100, FlagSYN, "")
	}
	seg(5, 9, 100, FlagSYN, "") // refused
	seg(6, 80, 100, FlagSYN|FlagACK, "")
	seg(7, 80, 101, ack, "no SYN")
	seg(0, 80, 100, FlagSYN, "") // again
	check("after the SYNs", Stats{Opened: 5})
	seg(0, 80, 101, FlagFIN|FlagACK, "")
	seg(1, 80, 101, FlagRST, "")
	check("after FIN and RST", Stats{Opened: 5, Closed: 2})
	for j := range maxHeld + 1 {
		seg(2, 80, uint32(102+j), ack, "x")
	}
	check("after too much held", Stats{Opened: 5, Closed: 2, Lost: 1})
	seg(3, 80, 105, ack, "x")
	tr.Sweep(now.Add(GapTimeout + time.Second))
	check("after a sweep of a gap", Stats{Opened: 5, Closed: 2, Lost: 2})
	seg(4, 80, 777, FlagSYN, "") // a new connection on the tuple
	check("after the tuple is used again", Stats{Opened: 6, Closed: 3, Lost: 2})
	tr.Sweep(now.Add(IdleTimeout + time.Second))
	check("after an idle sweep", Stats{Opened: 6, Closed: 4, Lost: 2})
	if n := tr.Flows(); n != 0 {
		t.Errorf("Flows() = %d, want 0", n)
	}
}

// The Handler's Open may call the Tracker (its lock is not held).
func TestTrackerOpenMayCallTheTracker(t *testing.T) {
	now := time.Unix(1e9, 0)
	h := &fakeHandler{}
	tr := NewTracker(h)
	web := netip.MustParseAddrPort("10.0.0.9:80")
	tls := netip.MustParseAddrPort("10.0.0.9:443")
	tr.Segment(Segment{Src: v4Client, Dst: web, Seq: 1, Flags: FlagSYN}, now)
	flows := -1
	h.onOpen = func() {
		tr.CloseWhere(func(_, dst netip.AddrPort) bool { return dst == web })
		flows = tr.Flows()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.Segment(Segment{Src: v4Client, Dst: tls, Seq: 1, Flags: FlagSYN}, now)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Segment did not return: Open called with the Tracker's lock held?")
	}
	if flows != 0 {
		t.Errorf("Flows() in Open = %d, want 0", flows)
	}
	if len(h.streams) != 2 || h.streams[0].closed != 1 || h.streams[1].closed != 0 {
		t.Fatalf("streams %+v", h.streams)
	}
	tr.Segment(Segment{Src: v4Client, Dst: tls, Seq: 2, Flags: ack, Payload: []byte("x")}, now)
	if string(h.streams[1].data) != "x" || tr.Flows() != 1 {
		t.Errorf("after Open: data %q, Flows() = %d", h.streams[1].data, tr.Flows())
	}
}

// Past MaxFlows, SYNs are counted as Ignored and Open is not called.
func TestTrackerMaxFlows(t *testing.T) {
	now := time.Unix(1e9, 0)
	h := &fakeHandler{}
	tr := NewTracker(h)
	dst := netip.MustParseAddrPort("10.0.0.9:80")
	client := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
	}
	for i := range MaxFlows {
		tr.Segment(Segment{Src: client(i), Dst: dst, Seq: 1, Flags: FlagSYN}, now)
	}
	if n := tr.Flows(); n != MaxFlows {
		t.Fatalf("Flows() = %d, want %d", n, MaxFlows)
	}
	tr.Segment(Segment{Src: client(MaxFlows), Dst: dst, Seq: 1, Flags: FlagSYN}, now)
	if h.opens != MaxFlows {
		t.Errorf("Open called %d times, want %d", h.opens, MaxFlows)
	}
	if st := tr.Stats(); st != (Stats{Opened: MaxFlows, Ignored: 1}) {
		t.Errorf("Stats() = %+v", st)
	}
	// One ends: there is room again.
	tr.Segment(Segment{Src: client(0), Dst: dst, Seq: 2, Flags: FlagRST}, now)
	tr.Segment(Segment{Src: client(MaxFlows), Dst: dst, Seq: 1, Flags: FlagSYN}, now)
	if h.opens != MaxFlows+1 || tr.Flows() != MaxFlows {
		t.Errorf("after one ended: Open called %d times, Flows() = %d", h.opens, tr.Flows())
	}
}

func FuzzTracker(f *testing.F) {
	f.Add([]byte(""), uint64(0))
	f.Add([]byte("hello, world"), uint64(1))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), uint64(2))
	f.Add(bytes.Repeat([]byte("0123456789abcdef"), 64), uint64(3))
	f.Add(bytes.Repeat([]byte{0}, 5000), uint64(4))
	f.Add([]byte("x"), uint64(5))
	for i := range 8 {
		f.Add([]byte(fmt.Sprintf("%0400d", i)), uint64(1000+i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		if len(data) > 1<<16 {
			data = data[:1<<16]
		}
		rng := rand.New(rand.NewPCG(seed, uint64(len(data))))

		var isn uint32
		switch rng.IntN(3) {
		case 0:
			isn = rng.Uint32()
		case 1: // the bytes cross 2^32
			isn = math.MaxUint32 - uint32(rng.IntN(len(data)+2))
		case 2:
			isn = math.MaxUint32 - uint32(rng.IntN(4))
		}

		// Cut the bytes into chunks; each is sent once at least, perhaps
		// again, and with a retransmission overlapping earlier bytes, or
		// one of earlier bytes only.
		type span struct{ start, end int }
		maxChunk := 1 + rng.IntN(64)
		var sends []span
		for c := 0; c < len(data); {
			e := min(len(data), c+1+rng.IntN(maxChunk))
			sends = append(sends, span{c, e})
			if rng.IntN(8) == 0 {
				sends = append(sends, span{c, e})
			}
			if rng.IntN(8) == 0 {
				sends = append(sends, span{max(0, c-rng.IntN(100)), e})
			}
			if rng.IntN(8) == 0 && c > 0 {
				s := rng.IntN(c)
				sends = append(sends, span{s, min(c, s+1+rng.IntN(100))})
			}
			c = e
		}
		// Shuffle them in windows of at most 8: after each window, all of
		// its bytes are delivered and nothing is held, so no more than 7
		// segments are ever held, far below maxHeld.
		for i := 0; i < len(sends); {
			w := min(len(sends)-i, 1+rng.IntN(8))
			win := sends[i : i+w]
			rng.Shuffle(len(win), func(a, b int) { win[a], win[b] = win[b], win[a] })
			i += w
		}

		h := &fakeHandler{}
		tr := NewTracker(h)
		now := time.Unix(1e9, 0)
		send := func(s Segment) {
			feed(tr, s, now)
			now = now.Add(time.Millisecond)
			tr.Sweep(now)
		}
		syn := clientSeg(isn, FlagSYN, "")
		if len(sends) > 0 && rng.IntN(4) == 0 { // TCP Fast Open
			syn.Payload = data[:sends[0].end]
		}
		send(syn)
		for _, s := range sends {
			if rng.IntN(32) == 0 {
				send(syn) // again
			}
			send(clientSeg(isn+1+uint32(s.start), ack, string(data[s.start:s.end])))
		}
		fin := clientSeg(isn+1+uint32(len(data)), FlagFIN|FlagACK, "")
		if tail := rng.IntN(min(len(data), 100) + 1); rng.IntN(2) == 0 {
			fin.Seq -= uint32(tail)
			fin.Payload = data[len(data)-tail:]
		}
		send(fin)

		if h.opens != 1 || len(h.streams) != 1 {
			t.Fatalf("Open called %d times, %d streams; want 1", h.opens, len(h.streams))
		}
		st := h.streams[0]
		if !bytes.Equal(st.data, data) {
			i := 0
			for i < len(st.data) && i < len(data) && st.data[i] == data[i] {
				i++
			}
			t.Fatalf("stream got %d bytes, want %d; they differ from byte %d (ISN %#x)", len(st.data), len(data), i, isn)
		}
		if st.closed != 1 || st.lost != 0 || st.late != 0 {
			t.Fatalf("Close %d times, Lost %d times, %d calls after the end; want Close once", st.closed, st.lost, st.late)
		}
		if n := tr.Flows(); n != 0 {
			t.Fatalf("Flows() = %d after the FIN", n)
		}
		if s := tr.Stats(); s != (Stats{Opened: 1, Closed: 1}) {
			t.Fatalf("Stats() = %+v", s)
		}
	})
}
