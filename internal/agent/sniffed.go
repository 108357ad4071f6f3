package agent

import (
	"net/netip"

	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/sniff"
)

// A port that sessions only mirror is not redirected: the agent follows
// its connections from a packet capture (sniff), so the deployed app's
// traffic keeps its own path and pays nothing for the copies but the
// kernel's clone of each packet. A port someone steals is redirected to
// the agent, and its mirror copies are taken as the agent relays it
// (teeConn). Where the capture cannot be opened (no CAP_NET_RAW), mirrored
// ports are redirected too.

// route puts port's connections on the path its subscriptions need.
// Called with in.mu held, after in.ports[port] changed. The old path is
// removed before the new one is added: a connection opened in between is
// not copied, rather than copied twice.
func (in *incoming) route(port uint16) error {
	subs := in.ports[port]
	capture := len(subs) > 0 && mirrorOnly(subs) && in.capture() != nil
	redirect := len(subs) > 0 && !capture
	if !capture && in.sniffer != nil && in.sniffer.Watching(port) {
		if err := in.sniffer.Unwatch(port); err != nil {
			in.log.Warn("no longer capturing a port", "port", port, "err", err)
		}
	}
	if !redirect && in.redirected[port] {
		if err := in.redir.Unredirect(port); err != nil {
			in.log.Warn("removing redirect rule", "port", port, "err", err)
		}
		delete(in.redirected, port)
	}
	if capture {
		err := in.sniffer.Watch(port)
		if err == nil {
			return nil
		}
		in.log.Warn("cannot capture the port's connections; mirroring it through the agent", "port", port, "err", err)
		redirect = true
	}
	if redirect && !in.redirected[port] {
		if err := in.ensureListener(); err != nil {
			return err
		}
		if err := in.redir.Redirect(port, in.lnPort); err != nil {
			return err
		}
		in.redirected[port] = true
	}
	return nil
}

func mirrorOnly(subs []*subscription) bool {
	for _, s := range subs {
		if s.mode != "mirror" {
			return false
		}
	}
	return true
}

// capture returns the agent's packet capture in the target's network
// namespace, started on first use; nil where it cannot be had (a fake
// target, or the capture failed once: it is not retried). Called with
// in.mu held.
func (in *incoming) capture() *sniff.Sniffer {
	if in.sniffer != nil || in.sniffErr != nil {
		return in.sniffer
	}
	ns := in.srv.Target.NetNS()
	if ns == "" || in.srv.NewRedirector != nil {
		return nil
	}
	s, err := sniff.Start(ns, sniffHandler{in}, netfilter.AgentMark, netfilter.TransparentMark)
	if err != nil {
		in.sniffErr = err
		in.log.Warn("mirrored ports go through the agent: the packet capture cannot be opened", "err", err)
		return nil
	}
	in.sniffer = s
	return s
}

// closeCapture stops the packet capture. Called with in.mu held, so the
// capture ends on its own: its goroutine may be waiting for in.mu (to open
// a connection's copies).
func (in *incoming) closeCapture() {
	if s := in.sniffer; s != nil {
		in.sniffer = nil
		go func() {
			st := s.Stats()
			s.Close()
			in.log.Info("packet capture closed", "connections", st.Opened, "lost", st.Lost, "packets", st.Packets, "dropped", st.Drops)
		}()
	}
}

// sniffHandler opens the mirror copies of a captured connection.
type sniffHandler struct{ in *incoming }

func (h sniffHandler) Open(client, dst netip.AddrPort) sniff.Stream {
	sinks := h.in.mirrorSinks(h.in.snapshot(dst.Port()), client, dst)
	if len(sinks) == 0 {
		return nil
	}
	return sniffedConn(sinks)
}

// sniffedConn is a captured connection's copies.
type sniffedConn []*mirrorSink

func (c sniffedConn) Data(b []byte) {
	for _, s := range c {
		s.send(b)
	}
}

func (c sniffedConn) Lost() {
	for _, s := range c {
		s.lose()
	}
}

func (c sniffedConn) Close() {
	for _, s := range c {
		s.close()
	}
}
