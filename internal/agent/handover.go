package agent

import (
	"net"
	"net/netip"
	"time"

	"github.com/tether-dev/tether/internal/netfilter"
)

// Handing connections over between the app and the agent without failing
// a request in flight. A redirect rule only catches new connections: one
// opened before it keeps going to the app, and one the agent holds keeps
// going through the agent after its rule is gone. Neither is ever cut in
// the middle of an exchange; each is closed only when it is quiet after an
// answer (a keep-alive connection between two requests), as any server
// closes idle connections, and its client reconnects along the new route.
const (
	// quietAnswered is how long a connection must have been quiet after
	// an answer before it is closed; it is closed only while its quiet
	// time is within quietWindow of that. A connection first seen quiet
	// for longer may be about to be used (a client that pauses 1.5 s
	// between requests): closing it at an arbitrary moment of its pause
	// would race its next request, so it waits for its next exchange,
	// or for quietLong.
	quietAnswered = time.Second
	quietWindow   = 3 * handoverPoll
	// quietLong closes any connection quiet this long, also when the
	// kernel's clock cannot tell whether the answer or the next request
	// came last (both in one tick: then only a request served for this
	// long could be cut).
	quietLong = 10 * time.Second
	// handoverPoll is how often connections are looked at.
	handoverPoll = 100 * time.Millisecond
	// drainLimit bounds the agent's drain: connections still busy after
	// it are cut. It leaves room for a connection quiet at its start to
	// reach quietLong.
	drainLimit = quietLong + time.Second
	// ShutdownLimit bounds the whole orderly shutdown of an agent: the
	// drain and the rest. The agent's pod must give it this long between
	// SIGTERM and SIGKILL.
	ShutdownLimit = drainLimit + 2*time.Second
)

// quietEnough reports whether a connection quiet for q (answered: its
// owner answered last, for sure) may be closed now.
func quietEnough(q time.Duration, answered bool) bool {
	return (answered && q >= quietAnswered && q < quietAnswered+quietWindow) || q >= quietLong
}

// closable reports whether a connection is quiet enough to be closed.
func closable(c netfilter.Conn) bool {
	q, st := c.Quiet()
	return st != netfilter.Busy && quietEnough(q, st == netfilter.Answered)
}

// takeover closes the connections to port that bypass the agent (opened
// before its redirect rule), each as soon as it is quiet after an answer,
// until none is left or nobody steals port any more. Their clients
// reconnect through the rule.
func (in *incoming) takeover(port uint16) {
	defer func() {
		in.mu.Lock()
		delete(in.takeovers, port)
		in.mu.Unlock()
	}()
	d, err := netfilter.OpenDiag(in.srv.Target.NetNS())
	if err != nil {
		in.log.Warn("connections opened before the subscription keep going to the app until they reconnect", "port", port, "err", err)
		return
	}
	defer d.Close()
	closed := 0
	tick := time.NewTicker(handoverPoll)
	defer tick.Stop()
	for range tick.C {
		if !in.stealing(port) {
			return
		}
		conns, err := d.Conns()
		if err != nil {
			in.log.Warn("listing connections opened before the subscription", "port", port, "err", err)
			return
		}
		left := 0
		for _, c := range bypassing(conns, port) {
			if !closable(c) {
				left++
				continue
			}
			if err := d.Destroy(c); err != nil {
				in.log.Warn("connections opened before the subscription keep going to the app until they reconnect", "port", port, "err", err)
				return
			}
			closed++
		}
		if left == 0 {
			if closed > 0 {
				in.log.Info("closed the connections opened before the subscription, each when quiet after an answer", "port", port, "count", closed)
			}
			return
		}
	}
}

// bypassing returns the app's side of the connections to port that do not
// come from the agent: the agent's own sockets to the app carry its marks,
// and the app's side of each has the agent's socket as its peer.
func bypassing(conns []netfilter.Conn, port uint16) []netfilter.Conn {
	agent := map[netip.AddrPort]bool{}
	for _, c := range conns {
		if c.Remote.Port() == port && (c.Mark == netfilter.AgentMark || c.Mark == netfilter.TransparentMark) {
			agent[c.Local] = true
		}
	}
	var out []netfilter.Conn
	for _, c := range conns {
		if c.Local.Port() == port && !agent[c.Remote] {
			out = append(out, c)
		}
	}
	return out
}

// stealing reports whether a session steals port.
func (in *incoming) stealing(port uint16) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ln == nil {
		return false
	}
	for _, s := range in.ports[port] {
		if s.mode != "mirror" {
			return true
		}
	}
	return false
}

// trackSpliced registers a client connection passed through whole (not
// routed per request) until done is called.
func (in *incoming) trackSpliced(c *net.TCPConn) (done func()) {
	in.mu.Lock()
	in.spliced[c] = struct{}{}
	in.mu.Unlock()
	return func() {
		in.mu.Lock()
		delete(in.spliced, c)
		in.mu.Unlock()
	}
}

// drain is the agent's orderly end for the connections it passes to the
// app: their redirect rules are already gone, so their clients reconnect
// straight to the app. Requests in flight finish; HTTP/1 answers from now
// on say "Connection: close"; every connection is closed when quiet after
// an answer; HTTP/2 connections get a GOAWAY. What is still busy after
// limit is cut. The listener keeps accepting meanwhile: a connection
// redirected just before its rule went completes its handshake (and
// waits in the accept queue) within a round trip, and is served like the
// others, for at least one poll.
func (in *incoming) drain(limit time.Duration) {
	in.mu.Lock()
	r, ln := in.http, in.ln
	in.mu.Unlock()
	if ln == nil {
		return
	}
	deadline := time.Now().Add(limit)
	if r != nil {
		r.draining.Store(true)
	}
	var d *netfilter.Diag
	if ns := in.srv.Target.NetNS(); ns != "" {
		var err error
		if d, err = netfilter.OpenDiag(ns); err != nil {
			in.log.Warn("cannot see which passed-through connections are quiet; waiting for them to end", "err", err)
		} else {
			defer d.Close()
		}
	}
	start := time.Now()
	for {
		if r != nil {
			r.closeQuiet()
		}
		in.closeQuietSpliced(d)
		// Every held connection, also one still being accepted or routed.
		left := in.holding()
		if left == 0 && time.Since(start) >= handoverPoll {
			break
		}
		if time.Now().After(deadline) {
			in.log.Warn("connections still busy at the end of the drain are cut", "count", left, "limit", limit.String())
			break
		}
		time.Sleep(handoverPoll)
	}
	if r != nil {
		r.shutdown(time.Until(deadline))
	}
	in.log.Info("passed-through connections drained", "took", time.Since(start).Round(time.Millisecond).String())
}

func (in *incoming) splicedConns() []*net.TCPConn {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]*net.TCPConn, 0, len(in.spliced))
	for c := range in.spliced {
		out = append(out, c)
	}
	return out
}

// closeQuietSpliced closes the spliced client connections that are quiet
// after an answer and returns how many are left.
func (in *incoming) closeQuietSpliced(d *netfilter.Diag) int {
	cs := in.splicedConns()
	if len(cs) == 0 || d == nil {
		return len(cs)
	}
	conns, err := d.Conns()
	if err != nil {
		return len(cs)
	}
	byTuple := map[[2]netip.AddrPort]netfilter.Conn{}
	for _, c := range conns {
		byTuple[[2]netip.AddrPort{c.Local, c.Remote}] = c
	}
	left := 0
	for _, c := range cs {
		key := [2]netip.AddrPort{unmapped(c.LocalAddr()), unmapped(c.RemoteAddr())}
		if dc, ok := byTuple[key]; ok && !closable(dc) {
			left++
			continue
		}
		c.Close()
	}
	return left
}

func unmapped(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
