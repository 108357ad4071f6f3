package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// Reconnect timing: attempts back off up to maxBackoff and stop after
// giveUp (the agent keeps a session 60 s by default; after that a new one
// is started and subscriptions are made again, so trying longer helps).
const (
	maxBackoff = 5 * time.Second
	giveUp     = 2 * time.Minute
	// waitForReconnect is how long a new request waits for a reconnect in
	// progress before failing.
	waitForReconnect = 10 * time.Second
)

// openStream opens a stream on the current connection, waiting a little
// when a reconnect is under way.
func (s *Session) openStream(ctx context.Context) (protocol.Stream, error) {
	deadline := time.Now().Add(waitForReconnect)
	for {
		s.muxMu.Lock()
		mux, waiting := s.mux, s.reconnect
		s.muxMu.Unlock()
		st, err := mux.Open()
		if err == nil {
			return st, nil
		}
		if waiting == nil || s.closing.Load() || time.Now().After(deadline) {
			return nil, fmt.Errorf("the connection to the agent is gone: %w", syscallErr(err))
		}
		select {
		case <-waiting:
		case <-ctx.Done():
			return nil, syscallErr(ctx.Err())
		case <-time.After(time.Until(deadline)):
		}
	}
}

// watch reconnects whenever the connection dies, until Close.
func (s *Session) watch() {
	for {
		s.muxMu.Lock()
		mux := s.mux
		s.muxMu.Unlock()
		<-mux.Done()
		if s.closing.Load() {
			close(s.lost)
			return
		}
		if !s.reconnectLoop() {
			close(s.lost)
			return
		}
	}
}

// reconnectLoop restores the connection; false when it gave up.
func (s *Session) reconnectLoop() bool {
	s.muxMu.Lock()
	done := make(chan struct{})
	s.reconnect = done
	s.muxMu.Unlock()
	defer func() {
		s.muxMu.Lock()
		s.reconnect = nil
		s.muxMu.Unlock()
		close(done)
	}()
	if s.redial == nil {
		s.warn("the connection to the agent was lost: remote files, DNS and connections fail until the command ends")
		return false
	}
	s.warn("the connection to the agent was lost; reconnecting (connections in flight were reset)")
	start := time.Now()
	backoff := 100 * time.Millisecond
	var last error
	for time.Since(start) < giveUp && !s.closing.Load() {
		err := s.reconnectOnce()
		if err == nil {
			return true
		}
		if last == nil || err.Error() != last.Error() {
			// Say why, once per reason: the user may be able to help
			// (an OOM-killed agent, a target that is gone).
			s.warn("reconnecting: %v", err)
		}
		last = err
		s.log.Debug("reconnect failed", "err", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, maxBackoff)
	}
	if !s.closing.Load() {
		s.warn("could not reconnect to the agent for %v (%v): remote files, DNS and connections fail until the command ends", giveUp, last)
	}
	return false
}

func (s *Session) reconnectOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	conn, agent, err := s.redial(ctx)
	if err != nil {
		return err
	}
	// The redial may have made a replica's pod the session's own: take
	// over that replica's agent session (see adoption).
	resume := s.ID()
	ad := s.takeAdoption()
	if ad != nil {
		resume = ad.id
	}
	w, mux, err := handshake(conn, agent, resume, s.run)
	if err != nil {
		if ad != nil {
			s.putAdoption(ad)
		}
		var ended *protocol.EndedError
		if errors.As(err, &ended) {
			s.end(ended.Reason)
		}
		return err
	}
	s.muxMu.Lock()
	if s.closing.Load() {
		s.muxMu.Unlock()
		mux.Close()
		if ad != nil {
			s.putAdoption(ad) // closing: it ends its agent session
		}
		return errors.New("closing")
	}
	s.mux, s.welcome = mux, w
	s.muxMu.Unlock()
	go s.acceptIncoming(mux)
	if ad != nil {
		// The replica's connection now only finishes what it carries:
		// the agent sends new connections over this one.
		time.AfterFunc(supersededGrace, func() { ad.mux.Close() })
	}
	if w.Resumed && ad != nil {
		s.warn("reconnected to the agent of pod %s after %v: it took over the session that received that pod's traffic, with no gap", ad.name, time.Since(start).Round(time.Millisecond))
		s.subscribeMissing(ctx, ad.ports)
		return nil
	}
	if w.Resumed {
		s.warn("reconnected to the agent after %v; session %s resumed", time.Since(start).Round(time.Millisecond), w.SessionID)
		return nil
	}
	// The agent no longer knew the session (it restarted, or the grace
	// period passed): subscribe again what the program listens on.
	s.warn("reconnected to the agent after %v as a new session %s; subscribing the program's ports again", time.Since(start).Round(time.Millisecond), w.SessionID)
	s.resubscribe(ctx)
	return nil
}

// supersededGrace is how long a replaced connection to an agent may
// finish the traffic it carries (the agent closes it then too).
const supersededGrace = 10 * time.Second

// subscribeMissing subscribes the local listeners' ports that an adopted
// agent session lacks (those the program listened on while it was being
// taken over).
func (s *Session) subscribeMissing(ctx context.Context, have map[uint16]bool) {
	s.in.mu.Lock()
	var ports []uint16
	for p := range s.in.remote {
		if !have[p] {
			ports = append(ports, p)
		}
	}
	s.in.mu.Unlock()
	for _, port := range ports {
		if _, err := s.call(ctx, s.subscribeRequest(port)); err != nil {
			s.fail("subscribing the target's port %d again: %v", port, err)
		}
	}
}

// resubscribe repeats the subscriptions of the local listeners.
func (s *Session) resubscribe(ctx context.Context) {
	s.in.mu.Lock()
	ports := make(map[uint16]bool, len(s.in.remote))
	for p := range s.in.remote {
		ports[p] = true
	}
	s.in.mu.Unlock()
	for port := range ports {
		if _, err := s.call(ctx, s.subscribeRequest(port)); err != nil {
			s.fail("subscribing the target's port %d again: %v", port, err)
		}
	}
}
