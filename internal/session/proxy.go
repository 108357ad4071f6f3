package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
	"github.com/tether-dev/tether/internal/splice"
)

// pendingTTL is how long a dialled remote connection waits for the local
// socket's connect to reach the proxy before it is dropped.
const pendingTTL = time.Minute

// tcpProxy accepts the local ends of redirected sockets. Each accepted
// connection is matched, by its source port, to the remote connection the
// supervisor dialled before answering connect.
type tcpProxy struct {
	s      *Session
	v4, v6 net.Listener
	a4, a6 netip.AddrPort

	mu      sync.Mutex
	pending map[uint16]pendingConn
	peers   map[uint16]netip.AddrPort // local port -> real destination (getpeername)
	done    chan struct{}
}

type pendingConn struct {
	c   io.Closer
	at  time.Time
	dst netip.AddrPort
}

// remoteConn is a connection dialled through the agent, not yet spliced.
type remoteConn struct {
	st  protocol.Stream
	dst netip.AddrPort
}

func (r *remoteConn) Close() error { return r.st.Close() }

// dnsConn marks a connection to one of the target's nameservers: the proxy
// answers it itself (DNS filter, name tracking) and dials upstream lazily.
type dnsConn struct{ server netip.AddrPort }

func (dnsConn) Close() error { return nil }

func newTCPProxy(s *Session) (*tcpProxy, error) {
	p := &tcpProxy{s: s, pending: map[uint16]pendingConn{}, peers: map[uint16]netip.AddrPort{}, done: make(chan struct{})}
	var err error
	p.v4, err = net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the local proxy: %w", err)
	}
	p.a4 = p.v4.Addr().(*net.TCPAddr).AddrPort()
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		p.v6 = l
		p.a6 = l.Addr().(*net.TCPAddr).AddrPort()
		go p.serve(l)
	}
	go p.serve(p.v4)
	go p.janitor()
	return p, nil
}

func (p *tcpProxy) close() {
	close(p.done)
	p.v4.Close()
	if p.v6 != nil {
		p.v6.Close()
	}
	p.mu.Lock()
	for _, pc := range p.pending {
		pc.c.Close()
	}
	p.pending = map[uint16]pendingConn{}
	p.mu.Unlock()
}

func (p *tcpProxy) janitor() {
	t := time.NewTicker(pendingTTL / 4)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			p.mu.Lock()
			for port, pc := range p.pending {
				if now.Sub(pc.at) > pendingTTL {
					pc.c.Close()
					delete(p.pending, port)
				}
			}
			p.mu.Unlock()
		}
	}
}

func (p *tcpProxy) register(port uint16, c io.Closer) {
	var dst netip.AddrPort
	switch c := c.(type) {
	case *remoteConn:
		dst = c.dst
	case dnsConn:
		dst = c.server
	}
	p.mu.Lock()
	if old, ok := p.pending[port]; ok {
		old.c.Close()
	}
	p.pending[port] = pendingConn{c: c, at: time.Now(), dst: dst}
	p.peers[port] = dst
	p.mu.Unlock()
}

func (p *tcpProxy) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go p.handle(c.(*net.TCPConn))
	}
}

func (p *tcpProxy) handle(c *net.TCPConn) {
	port := c.RemoteAddr().(*net.TCPAddr).AddrPort().Port()
	p.mu.Lock()
	pc, ok := p.pending[port]
	delete(p.pending, port)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if _, again := p.pending[port]; !again {
			delete(p.peers, port)
		}
		p.mu.Unlock()
	}()
	if !ok {
		p.s.log.Warn("local proxy: connection from an unknown local port; dropping it", "port", port)
		c.Close()
		return
	}
	switch pc := pc.c.(type) {
	case *remoteConn:
		splice.Join(c, pc.st)
	case dnsConn:
		p.s.serveDNSTCP(c, pc.server)
	}
}

func (p *tcpProxy) peerOf(port uint16) (netip.AddrPort, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dst, ok := p.peers[port]
	return dst, ok
}

// dialStream opens a dial stream to dst through the agent.
func (s *Session) dialStream(ctx context.Context, network string, dst netip.AddrPort) (protocol.Stream, error) {
	st, err := s.open(ctx, protocol.Request{Op: protocol.OpDial, Network: network, Addr: dst.String()})
	if err != nil {
		return nil, err
	}
	if _, err := s.readResponse(st); err != nil {
		st.Close()
		return nil, err
	}
	st.SetDeadline(time.Time{})
	return st, nil
}

// --- layer.Session: network ---

func (s *Session) OutgoingRemote(network string, dst netip.AddrPort) bool {
	if s.servers[netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())] {
		return true // the target's nameserver: DNS is handled here
	}
	if dst.Port() == 53 && !s.cfg.DNSEnabled() {
		return false // local resolv.conf: its nameserver stays local
	}
	return s.out.remoteFor(network, dst)
}

func (s *Session) DialTCP(ctx context.Context, dst netip.AddrPort) (io.Closer, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if s.servers[dst] {
		return dnsConn{server: dst}, nil
	}
	st, err := s.dialStream(ctx, "tcp", dst)
	if err != nil {
		return nil, err
	}
	return &remoteConn{st: st, dst: dst}, nil
}

func (s *Session) TCPProxy() (v4, v6 netip.AddrPort) { return s.proxy.a4, s.proxy.a6 }

func (s *Session) RegisterTCP(localPort uint16, c io.Closer) { s.proxy.register(localPort, c) }

func (s *Session) PeerOf(local, peer netip.AddrPort) (netip.AddrPort, bool) {
	if peer == s.proxy.a4 || (s.proxy.a6.IsValid() && peer == s.proxy.a6) {
		return s.proxy.peerOf(local.Port())
	}
	// A connection the session delivered from the target's port.
	if client, ok := s.incomingPeer(peer); ok {
		return client, true
	}
	return s.RelayPeer(peer)
}

func (s *Session) RelayPeer(relay netip.AddrPort) (netip.AddrPort, bool) {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	dst, ok := s.byRelay[netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())]
	return dst, ok
}

// --- UDP ---

// udpRelay is a local UDP socket standing for one remote destination. Each
// local source address gets its own dial udp stream through the agent, so
// replies find their way back.
type udpRelay struct {
	s    *Session
	dst  netip.AddrPort
	conn *net.UDPConn
	dns  bool

	mu    sync.Mutex
	peers map[netip.AddrPort]*udpPeer
}

type udpPeer struct {
	mu   sync.Mutex
	st   protocol.Stream // nil until dialled
	last time.Time
}

// udpIdle closes a relay peer stream after this long without traffic.
const udpIdle = 2 * time.Minute

func (s *Session) UDPRelay(dst netip.AddrPort) (netip.AddrPort, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	if r, ok := s.relays[dst]; ok {
		return r.conn.LocalAddr().(*net.UDPAddr).AddrPort(), nil
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("starting a UDP relay for %v: %w", dst, err)
	}
	r := &udpRelay{s: s, dst: dst, conn: conn, dns: s.servers[dst], peers: map[netip.AddrPort]*udpPeer{}}
	s.relays[dst] = r
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s.byRelay[addr] = dst
	go r.serve()
	return addr, nil
}

func (r *udpRelay) close() {
	r.conn.Close()
	r.mu.Lock()
	for _, p := range r.peers {
		p.mu.Lock()
		if p.st != nil {
			p.st.Close()
		}
		p.mu.Unlock()
	}
	r.mu.Unlock()
}

func (r *udpRelay) serve() {
	buf := make([]byte, protocol.MaxDatagram)
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		if r.dns {
			if reply, ok := r.s.answerLocally(msg); ok {
				r.conn.WriteToUDPAddrPort(reply, src)
				continue
			}
		}
		r.send(src, msg)
	}
}

func (r *udpRelay) send(src netip.AddrPort, msg []byte) {
	r.mu.Lock()
	p, ok := r.peers[src]
	if !ok {
		p = &udpPeer{}
		r.peers[src] = p
	}
	r.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = time.Now()
	if p.st == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := r.s.dialStream(ctx, "udp", r.dst)
		cancel()
		if err != nil {
			r.s.log.Debug("udp relay dial failed", "dst", r.dst.String(), "err", err)
			return // a lost datagram, as UDP allows
		}
		p.st = st
		go r.receive(src, p, st)
	}
	if err := protocol.WriteDatagram(p.st, msg); err != nil {
		p.st.Close()
		p.st = nil
	}
}

// receive delivers the target's replies for src until the stream ends or idles out.
func (r *udpRelay) receive(src netip.AddrPort, p *udpPeer, st protocol.Stream) {
	buf := make([]byte, protocol.MaxDatagram)
	for {
		st.SetReadDeadline(time.Now().Add(udpIdle))
		n, err := protocol.ReadDatagram(st, buf)
		if err != nil {
			p.mu.Lock()
			idle := time.Since(p.last) >= udpIdle
			if !idle && isTimeout(err) {
				p.mu.Unlock()
				continue
			}
			if p.st == st {
				p.st = nil
			}
			p.mu.Unlock()
			st.Close()
			return
		}
		if r.dns {
			r.s.names.record(buf[:n])
		}
		r.conn.WriteToUDPAddrPort(buf[:n], src)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
