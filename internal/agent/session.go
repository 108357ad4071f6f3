package agent

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// supersededGrace is how long a session's replaced connection may finish
// the streams it carries before the agent closes it.
const supersededGrace = 10 * time.Second

// errDetached is returned when a session has no live connection.
var errDetached = errors.New("the session's client is disconnected")

// session is one client session. Its connection (mux) can die and be
// replaced by a reconnect; the session, with its subscriptions, lives on
// for the server's grace period.
type session struct {
	id     string
	client string
	start  time.Time
	run    string          // Hello.Run
	grant  *protocol.Grant // set by tether-operator; nil: a direct session

	refusedMu sync.Mutex
	refused   []protocol.Refusal // the latest, oldest first

	pol    atomic.Pointer[sessionPolicy] // nil: no policy selects the target
	connMu sync.Mutex
	conns  map[*policyConn]struct{} // outgoing connections, for policy edits

	mu      sync.Mutex
	mux     protocol.Mux // nil while detached
	gen     int          // attachment generation
	closing bool         // the client said goodbye (OpClose)
	grace   *time.Timer
}

// attach makes mux the session's connection and returns its generation.
func (ss *session) attach(m protocol.Mux) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.grace != nil {
		ss.grace.Stop()
		ss.grace = nil
	}
	if old := ss.mux; old != nil {
		// A connection the client gave up on, or one it hands over (a
		// replica's session taken over by its main session): it may
		// finish what it carries, new streams use m.
		time.AfterFunc(supersededGrace, func() { old.Close() })
	}
	ss.gen++
	ss.mux = m
	ss.closing = false
	return ss.gen
}

// detach drops connection gen. current is false when a newer connection
// already replaced it.
func (ss *session) detach(gen int) (closing, current bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if gen != ss.gen {
		return false, false
	}
	ss.mux = nil
	return ss.closing, true
}

// startGrace ends the session after d unless connection gen is replaced.
func (ss *session) startGrace(d time.Duration, gen int, end func()) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.grace = time.AfterFunc(d, func() {
		ss.mu.Lock()
		expired := ss.gen == gen && ss.mux == nil
		ss.mu.Unlock()
		if expired {
			end()
		}
	})
}

func (ss *session) markClosing() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closing = true
}

// refuse records that the session was refused action (for listings and
// the operator's audit trail) and returns the response its client gets.
func (ss *session) refuse(action, msg string) protocol.Response {
	ss.record(protocol.Refusal{Action: action, Detail: msg})
	return protocol.Response{Errno: int(syscall.EACCES), Error: msg}
}

// record keeps refusal r. A policy's is kept once per policy and rule
// (later ones count): a program that retries a refused dial in a loop
// makes one entry of the audit trail, not thousands.
func (ss *session) record(r protocol.Refusal) {
	r.Time, r.Count = time.Now(), 1
	ss.refusedMu.Lock()
	defer ss.refusedMu.Unlock()
	if r.Policy != "" {
		for i := range ss.refused {
			if e := &ss.refused[i]; e.Policy == r.Policy && e.Rule == r.Rule {
				e.Count++
				return
			}
		}
	}
	if len(ss.refused) == protocol.MaxRefusals {
		ss.refused = slices.Delete(ss.refused, 0, 1)
	}
	ss.refused = append(ss.refused, r)
}

// policy is what the policies say of the session now (nil: nothing).
func (ss *session) policy() *sessionPolicy { return ss.pol.Load() }

func (ss *session) refusals() []protocol.Refusal {
	ss.refusedMu.Lock()
	defer ss.refusedMu.Unlock()
	return slices.Clone(ss.refused)
}

func (ss *session) currentMux() protocol.Mux {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.mux
}

// attached reports whether the session has a live connection: traffic for
// a detached session goes to the app instead.
func (ss *session) attached() bool { return ss.currentMux() != nil }

// open starts a stream to the client.
func (ss *session) open() (protocol.Stream, error) {
	m := ss.currentMux()
	if m == nil {
		return nil, errDetached
	}
	return m.Open()
}
