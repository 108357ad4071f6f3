package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// A replica is one more pod whose incoming traffic the session receives:
// a workload's other ready pods. Its agent gets the same subscriptions as
// the main agent's and delivers to the same local listeners; the program's
// environment, files, DNS and outgoing connections stay with the main
// (representative) pod. A replica that cannot be reached is retried with
// backoff without disturbing the session or the other replicas.
type replica struct {
	s    *Session
	key  string // the pod's UID
	name string // the pod's name, for messages
	dial func(ctx context.Context) (net.Conn, Credentials, error)
	// gone, if set, tells after a failed connect whether the pod is going
	// away (it returns ErrReplicaGone) or its agent still starts
	// (ErrReplicaStarting): then nothing is said.
	gone func(ctx context.Context) error

	stop     chan struct{}
	haltOnce sync.Once
	stopped  chan struct{}

	// mu serialises the replica's subscriptions and guards what follows.
	mu    sync.Mutex
	mux   protocol.Mux // nil while not connected
	id    string       // the agent's session id, for resuming
	ports map[uint16]bool
}

// ErrReplicaGone is what a replica's dial returns when its pod is going
// away: the replica then waits, silently, to be removed.
var ErrReplicaGone = errors.New("the pod is going away")

// ErrReplicaStarting is what a replica's gone function returns while its
// agent is still starting: the replica tries again soon, silently, and
// its first outcome (AddReplica's ready) is the first other one.
var ErrReplicaStarting = errors.New("its agent is starting")

// replicaStartingRetry is how often a starting replica's agent is tried.
const replicaStartingRetry = 100 * time.Millisecond

// Replica timing: reconnects back off up to replicaMaxBackoff; a replica
// subscription waits at most replicaCallTimeout.
const (
	replicaMaxBackoff  = 10 * time.Second
	replicaCallTimeout = 10 * time.Second
)

// AddReplica starts receiving the incoming traffic of another pod (key:
// its UID; name: for messages) through the agent dial reaches, with the
// subscriptions the program has made and will make. ready gets the first
// connection's outcome (a failure is said once and the replica keeps
// retrying). gone, if not nil, is asked after a failed connection whether
// the pod is going away (ErrReplicaGone), then the failure is not said,
// or whether its agent is still starting (ErrReplicaStarting), then it is
// tried again soon and ready waits.
// Adding a key twice does nothing.
func (s *Session) AddReplica(key, name string, dial func(ctx context.Context) (net.Conn, Credentials, error), gone func(ctx context.Context) error) (ready <-chan error) {
	done := make(chan error, 1)
	s.replMu.Lock()
	defer s.replMu.Unlock()
	if _, ok := s.replicas[key]; ok || s.closing.Load() {
		done <- nil
		return done
	}
	r := &replica{s: s, key: key, name: name, dial: dial, gone: gone, stop: make(chan struct{}), stopped: make(chan struct{}), ports: map[uint16]bool{}}
	s.replicas[key] = r
	go r.run(done)
	return done
}

// RemoveReplica stops receiving the incoming traffic of the pod key: its
// agent ends the subscriptions at once. Removing an unknown key does
// nothing.
func (s *Session) RemoveReplica(key string) {
	s.replMu.Lock()
	r := s.replicas[key]
	delete(s.replicas, key)
	s.replMu.Unlock()
	if r != nil {
		r.close()
	}
}

// An adoption is a replica's agent session handed to the session itself
// when the replica's pod becomes the session's own (its representative
// pod went): the next reconnect resumes it instead of starting a new
// agent session, so the subscriptions it holds never lapse and the pod's
// traffic never reaches the app in between.
type adoption struct {
	key, name string
	id        string       // the replica's agent session
	mux       protocol.Mux // its connection, closed once the session has taken over
	ports     map[uint16]bool
}

// AdoptReplica removes the replica key without ending its agent session,
// which the session's next reconnect takes over (see adoption). A replica
// that never connected is simply removed.
func (s *Session) AdoptReplica(key string) {
	s.replMu.Lock()
	r := s.replicas[key]
	delete(s.replicas, key)
	s.replMu.Unlock()
	if r == nil {
		return
	}
	r.halt()
	r.mu.Lock()
	ad := &adoption{key: key, name: r.name, id: r.id, mux: r.mux, ports: r.ports}
	r.mux = nil
	r.mu.Unlock()
	if ad.mux == nil || ad.id == "" {
		return
	}
	s.replMu.Lock()
	old := s.adopted
	s.adopted = ad
	s.replMu.Unlock()
	if old != nil {
		go closeAgentSession(old.mux) // superseded before any reconnect took it
	}
}

// takeAdoption returns the pending adoption, if any, and clears it.
func (s *Session) takeAdoption() *adoption {
	s.replMu.Lock()
	defer s.replMu.Unlock()
	ad := s.adopted
	s.adopted = nil
	return ad
}

// putAdoption gives an adoption back after a reconnect that failed, for
// the next one, unless a newer one is pending.
func (s *Session) putAdoption(ad *adoption) {
	s.replMu.Lock()
	defer s.replMu.Unlock()
	if s.adopted == nil && !s.closing.Load() {
		s.adopted = ad
		return
	}
	go closeAgentSession(ad.mux)
}

// Replicas are the names of the pods added with AddReplica, sorted.
func (s *Session) Replicas() []string {
	s.replMu.Lock()
	defer s.replMu.Unlock()
	var names []string
	for _, r := range s.replicas {
		names = append(names, r.name)
	}
	sort.Strings(names)
	return names
}

// closeReplicas removes every replica (the session closes), and ends the
// agent session of an adoption no reconnect took.
func (s *Session) closeReplicas() {
	s.replMu.Lock()
	rs := s.replicas
	s.replicas = map[string]*replica{}
	ad := s.adopted
	s.adopted = nil
	s.replMu.Unlock()
	var wg sync.WaitGroup
	if ad != nil {
		wg.Go(func() { closeAgentSession(ad.mux) })
	}
	for _, r := range rs {
		wg.Go(r.close)
	}
	wg.Wait()
}

// subscribeReplicas subscribes port on every connected replica, in
// parallel; one that fails says so and subscribes again when it
// reconnects.
func (s *Session) subscribeReplicas(ctx context.Context, port uint16) {
	s.replMu.Lock()
	rs := make([]*replica, 0, len(s.replicas))
	for _, r := range s.replicas {
		rs = append(rs, r)
	}
	s.replMu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			if err := r.subscribe(ctx, port); err != nil {
				s.warn("pod %s: subscribing the target's port %d: %v (its other requests go to the deployed app; retried when its agent reconnects)", r.name, port, err)
			}
		})
	}
	wg.Wait()
}

// run connects, and again whenever the connection drops, until close.
func (r *replica) run(ready chan<- error) {
	defer close(r.stopped)
	backoff := 200 * time.Millisecond
	var said string
	first, lost := true, false
	for {
		mux, err := r.connect()
		if errors.Is(err, ErrReplicaStarting) {
			select {
			case <-r.stop:
				if first {
					ready <- errors.New("removed while its agent was starting")
				}
				return
			case <-time.After(replicaStartingRetry):
			}
			continue
		}
		if first {
			ready <- err
			first = false
		}
		if err == nil {
			switch {
			case said != "":
				// As visible as the failure was.
				r.s.message("", "pod %s: its incoming traffic reaches the program again", r.name)
			case lost:
				r.s.warn("pod %s: the connection to its agent dropped and was restored (its connections in flight were reset)", r.name)
			}
			said, lost, backoff = "", false, 200*time.Millisecond
			select {
			case <-mux.Done():
			case <-r.stop:
				return
			}
			if r.stopping() {
				return
			}
			lost = true // said once reconnected, or with the reason it cannot
			continue
		}
		if r.stopping() {
			return
		}
		if errors.Is(err, ErrReplicaGone) {
			err = nil // its pod goes: nothing to tell, it is removed soon
		} else if err.Error() != said {
			// Once per reason: the others keep going meanwhile.
			if lost && said == "" {
				r.s.warn("pod %s: the connection to its agent was lost (its connections in flight were reset)", r.name)
			}
			r.s.warn("pod %s: %v; retrying with backoff (the other pods' traffic is unaffected)", r.name, err)
			said = err.Error()
		}
		select {
		case <-r.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, replicaMaxBackoff)
	}
}

func (r *replica) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// connect dials the agent, resumes (or starts) the replica's session on
// it and makes the program's subscriptions there. When that fails because
// the pod goes, the error is ErrReplicaGone.
func (r *replica) connect() (protocol.Mux, error) {
	mux, err := r.connectOnce()
	if err != nil && r.gone != nil && !errors.Is(err, ErrReplicaGone) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if gerr := r.gone(ctx); errors.Is(gerr, ErrReplicaGone) || errors.Is(gerr, ErrReplicaStarting) {
			return nil, fmt.Errorf("%w: %v", gerr, err)
		}
	}
	return mux, err
}

func (r *replica) connectOnce() (protocol.Mux, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, agent, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	id := r.id
	r.mu.Unlock()
	w, mux, err := handshake(conn, agent, id, r.s.run)
	if err != nil {
		var ended *protocol.EndedError
		if errors.As(err, &ended) {
			r.s.end(ended.Reason)
		}
		return nil, fmt.Errorf("connecting to its agent: %w", err)
	}
	go r.s.acceptIncoming(mux)
	r.mu.Lock()
	r.mux, r.id = mux, w.SessionID
	if !w.Resumed {
		r.ports = map[uint16]bool{}
	}
	r.mu.Unlock()
	if r.stopping() {
		closeAgentSession(mux)
		return nil, errors.New("removed")
	}
	r.s.in.mu.Lock()
	ports := make([]uint16, 0, len(r.s.in.remote))
	for p := range r.s.in.remote {
		ports = append(ports, p)
	}
	r.s.in.mu.Unlock()
	for _, p := range ports {
		if err := r.subscribe(ctx, p); err != nil {
			mux.Close()
			return nil, fmt.Errorf("subscribing the target's port %d: %w", p, err)
		}
	}
	return mux, nil
}

// subscribe makes the subscription for port on the replica's agent unless
// it has it; not connected, it does nothing (connect subscribes).
func (r *replica) subscribe(ctx context.Context, port uint16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mux == nil || r.ports[port] {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, replicaCallTimeout)
	defer cancel()
	resp, err := callOn(ctx, r.mux, r.s.subscribeRequest(port))
	if err != nil {
		return err
	}
	for _, w := range resp.Warnings {
		r.s.warn("pod %s: %s", r.name, w)
	}
	r.ports[port] = true
	return nil
}

// halt stops the replica's reconnecting and waits until it has stopped.
func (r *replica) halt() {
	r.haltOnce.Do(func() { close(r.stop) })
	<-r.stopped
}

// close ends the replica's session on its agent (its subscriptions go at
// once) and stops reconnecting.
func (r *replica) close() {
	r.halt()
	r.mu.Lock()
	mux := r.mux
	r.mux = nil
	r.mu.Unlock()
	if mux != nil {
		closeAgentSession(mux)
	}
}

// closeAgentSession tells the agent the session on mux ends (its
// subscriptions go at once), then closes mux.
func closeAgentSession(mux protocol.Mux) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	callOn(ctx, mux, protocol.Request{Op: protocol.OpClose})
	cancel()
	mux.Close()
}

// callOn is a request on mux whose whole answer is one Response.
func callOn(ctx context.Context, mux protocol.Mux, req protocol.Request) (protocol.Response, error) {
	st, err := mux.Open()
	if err != nil {
		return protocol.Response{}, fmt.Errorf("the connection to the agent is gone: %w", syscallErr(err))
	}
	defer st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	if err := protocol.WriteFrame(st, req); err != nil {
		return protocol.Response{}, err
	}
	return readResponseFrame(st)
}
