package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/protocol"
	"github.com/tether-dev/tether/internal/splice"
)

// incomingState is the session's side of incoming traffic: which local
// listeners receive which of the target's ports, and which local
// connections stand for which original clients.
type incomingState struct {
	mu     sync.Mutex
	remote map[uint16]netip.AddrPort         // target port -> local listener
	local  map[uint16]uint16                 // local listening port -> target port
	peers  map[netip.AddrPort]netip.AddrPort // local end of a delivered connection -> original client
}

func newIncomingState() *incomingState {
	return &incomingState{remote: map[uint16]netip.AddrPort{}, local: map[uint16]uint16{}, peers: map[netip.AddrPort]netip.AddrPort{}}
}

// ListenPort maps a port the program binds to the local port to bind
// instead (incoming.listen_ports: [[remote, local]]).
func (s *Session) ListenPort(port uint16) (uint16, bool) {
	if s.cfg.IncomingMode() == "off" {
		return 0, false
	}
	for _, m := range s.cfg.Incoming.ListenPorts {
		if m[0] == port {
			return m[1], true
		}
	}
	return 0, false
}

// IncomingEnabled reports whether listening programs get the target's traffic.
func (s *Session) IncomingEnabled() bool { return s.cfg.IncomingMode() != "off" }

// remotePortFor picks the target port a local listener stands for:
// the port the program asked for (when its bind was moved), else the
// local port through incoming.port_mapping ([[local, remote]]).
func (s *Session) remotePortFor(local netip.AddrPort, requested uint16) uint16 {
	if requested != 0 {
		return requested
	}
	for _, m := range s.cfg.Incoming.PortMapping {
		if m[0] == local.Port() {
			return m[1]
		}
	}
	return local.Port()
}

// wantsPort applies incoming.ports / ignore_ports.
func (s *Session) wantsPort(p uint16) bool {
	in := s.cfg.Incoming
	if len(in.Ports) > 0 {
		return slices.Contains(in.Ports, p)
	}
	return !slices.Contains(in.IgnorePorts, p)
}

// Subscribes reports whether a listener bound to addr gets the target's
// traffic: incoming is on, and a loopback address only with
// incoming.loopback.
func (s *Session) Subscribes(addr netip.AddrPort) bool {
	return s.IncomingEnabled() && (s.cfg.Incoming.Loopback || !addr.Addr().Unmap().IsLoopback())
}

// Listening subscribes the target port behind a local listener. An error
// means the agent refused (the port is stolen by someone else without a
// filter...); the supervisor fails the program's listen with EADDRINUSE.
func (s *Session) Listening(ctx context.Context, local netip.AddrPort, requested uint16) error {
	if !s.IncomingEnabled() {
		return nil
	}
	remote := s.remotePortFor(local, requested)
	if !s.Subscribes(local) {
		s.say("the local listener on %v is not subscribed: it is bound to a loopback address, so it stays this machine's own (set incoming.loopback: true to give it the target's port %d)", local, remote)
		return nil
	}
	if !s.wantsPort(remote) {
		key := "incoming.ignore_ports"
		if len(s.cfg.Incoming.Ports) > 0 {
			key = "incoming.ports"
		}
		s.say("the local listener on %v is not subscribed: the target's port %d is left out by %s", local, remote, key)
		return nil
	}
	s.in.mu.Lock()
	if old, ok := s.in.remote[remote]; ok {
		// Subscribed already by this session: a listener closed and
		// opened again, or one whose listen failed after its subscription
		// (another socket took the port meanwhile) and that the program
		// retried elsewhere. The new listener gets the port's traffic.
		delete(s.in.local, old.Port())
		s.in.remote[remote] = local
		s.in.local[local.Port()] = remote
		s.in.mu.Unlock()
		if old != local {
			s.say("traffic to the target's port %d now goes to the local listener on %v (was %v)", remote, local, old)
		}
		return nil
	}
	s.in.mu.Unlock()
	mode := s.cfg.IncomingMode()
	req := s.subscribeRequest(remote)
	resp, err := s.call(ctx, req)
	if err != nil {
		s.fail("listening on %v for the target's port %d: %v", local, remote, err)
		return err
	}
	for _, w := range resp.Warnings {
		s.warn("%s", w)
	}
	s.in.mu.Lock()
	s.in.remote[remote] = local
	s.in.local[local.Port()] = remote
	s.in.mu.Unlock()
	// The workload's other pods, if any, the same.
	s.subscribeReplicas(ctx, remote)
	what := "mirrored to"
	if mode == protocol.ModeSteal {
		what = "stolen by"
		if req.Filter != nil {
			if f, err := httpfilter.CompileWire(req.Filter); err == nil {
				what = fmt.Sprintf("stolen (requests with %v) by", f)
			}
		}
	}
	s.say("traffic to the target's port %d is %s the local listener on %v", remote, what, local)
	return nil
}

// subscribeRequest is the subscribe request for one of the target's ports.
func (s *Session) subscribeRequest(remote uint16) protocol.Request {
	mode := s.cfg.IncomingMode()
	req := protocol.Request{Op: protocol.OpSubscribe, Port: remote, Mode: mode}
	if mode == protocol.ModeMirror {
		req.MirrorRate = s.cfg.MirrorRate()
		if req.MirrorRate == 0 {
			req.MirrorRate = -1 // no bound
		}
	}
	if mode == protocol.ModeSteal {
		req.Filter = httpfilter.ToWire(s.cfg.Incoming.HTTPFilter)
		if ports := s.cfg.Incoming.HTTPFilter.Ports; len(ports) > 0 && !slices.Contains(ports, remote) {
			req.Filter = nil // http_filter.ports: the filter applies to these ports only
		}
	}
	return req
}

// Subscribed reports whether the local listening port receives the
// target's traffic.
func (s *Session) Subscribed(localPort uint16) bool {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	_, ok := s.in.local[localPort]
	return ok
}

func (s *Session) incomingPeer(end netip.AddrPort) (netip.AddrPort, bool) {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	p, ok := s.in.peers[unmapped(end)]
	return p, ok
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// dialLocal connects to a local listener. A wildcard listener is reached
// on loopback: IPv4 first (a dual-stack [::] listener takes it too, and
// IPv6 may be off), then IPv6. bound is called with the dialing socket's
// address after it is bound and before it connects.
func dialLocal(local netip.AddrPort, bound func(netip.AddrPort)) (net.Conn, error) {
	dial := func(to netip.AddrPort) (net.Conn, error) {
		from := netip.AddrPortFrom(to.Addr(), 0) // the listener's own address, or loopback
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(network, address string, rc syscall.RawConn) error {
			var berr error
			err := rc.Control(func(fd uintptr) {
				var sa unix.Sockaddr
				if from.Addr().Is4() {
					sa = &unix.SockaddrInet4{Addr: from.Addr().As4()}
				} else {
					sa = &unix.SockaddrInet6{Addr: from.Addr().As16()}
				}
				if berr = unix.Bind(int(fd), sa); berr != nil {
					return
				}
				got, err := unix.Getsockname(int(fd))
				if err != nil {
					berr = err
					return
				}
				switch a := got.(type) {
				case *unix.SockaddrInet4:
					bound(netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)))
				case *unix.SockaddrInet6:
					bound(netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)))
				}
			})
			if err != nil {
				return err
			}
			return berr
		}}
		return d.Dial("tcp", to.String())
	}
	a := local.Addr().Unmap()
	if !a.IsUnspecified() {
		return dial(netip.AddrPortFrom(a, local.Port()))
	}
	c, err := dial(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), local.Port()))
	if err != nil && a.Is6() {
		c, err = dial(netip.AddrPortFrom(netip.IPv6Loopback(), local.Port()))
	}
	return c, err
}

// acceptIncoming serves the streams the agent opens to deliver traffic on
// one connection (a reconnect starts another).
func (s *Session) acceptIncoming(mux protocol.Mux) {
	for {
		st, err := mux.Accept()
		if err != nil {
			return
		}
		go s.deliver(st)
	}
}

// deliver connects one delivered connection to the local listener.
func (s *Session) deliver(st protocol.Stream) {
	var hdr protocol.Incoming
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := protocol.ReadFrame(st, &hdr); err != nil {
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	if hdr.Ended != "" {
		s.end(hdr.Ended)
		st.Close()
		return
	}
	if hdr.Notice != "" {
		s.warn("%s", hdr.Notice)
		st.Close()
		return
	}
	s.in.mu.Lock()
	local, ok := s.in.remote[hdr.Port]
	s.in.mu.Unlock()
	if !ok {
		st.Close()
		return
	}
	client, _ := netip.ParseAddrPort(hdr.Client)
	var mine netip.AddrPort
	// The mapping from our end to the client must exist before the connect
	// completes: the program may accept (and ask for the peer) before Dial
	// returns here.
	c, err := dialLocal(local, func(end netip.AddrPort) {
		mine = unmapped(end)
		s.in.mu.Lock()
		s.in.peers[mine] = client
		s.in.mu.Unlock()
	})
	defer func() {
		if mine.IsValid() {
			s.in.mu.Lock()
			delete(s.in.peers, mine)
			s.in.mu.Unlock()
		}
	}()
	if err != nil {
		s.log.Debug("delivering a connection to the local listener failed", "port", hdr.Port, "local", local.String(), "err", err)
		st.Close()
		return
	}
	tc := c.(*net.TCPConn)
	if hdr.Mirror {
		// A copy: feed the local app, throw its answers away.
		go io.Copy(io.Discard, tc)
		io.Copy(tc, st)
		tc.CloseWrite()
		time.Sleep(100 * time.Millisecond) // let the app read the tail before the close
		tc.Close()
		st.Close()
		return
	}
	splice.Join(tc, st)
}
