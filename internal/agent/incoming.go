package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/passthrough"
	"github.com/tether-dev/tether/internal/protocol"
	"github.com/tether-dev/tether/internal/sniff"
	"github.com/tether-dev/tether/internal/splice"
)

// httpDetectTimeout bounds how long a connection on a port with filtered
// stealers may stay silent before it is passed through as non-HTTP (a
// server-speaks-first protocol).
const httpDetectTimeout = 2 * time.Second

// incoming owns the agent's side of incoming traffic: subscriptions per
// port, the redirect rules, the listener that redirected connections land
// on, and their routing (mirror, steal, HTTP-filtered steal, passthrough).
type incoming struct {
	srv *Server
	log *slog.Logger

	mu    sync.Mutex
	seq   uint64
	ports map[uint16][]*subscription
	redir netfilter.Redirector
	// redirected: the ports whose redirect rule is in place (see route).
	redirected map[uint16]bool
	// sniffer follows the mirrored ports no one steals (see route);
	// sniffErr: it could not be opened.
	sniffer  *sniff.Sniffer
	sniffErr error
	ln       net.Listener
	lnPort   uint16
	http     *httpRouter
	warned   map[[2]uint64]bool // (earlier, later) subscription pairs told about a runtime overlap
	// transparent: passthrough connections keep the client's address.
	transparent bool
	// takeovers: ports whose connections opened before their rule are
	// being taken over (see takeover).
	takeovers map[uint16]bool
	// spliced: client connections passed through whole, for the drain.
	spliced map[*net.TCPConn]struct{}
	// held is the redirected connections the agent holds. The redirect
	// table outlives the last subscription until they are gone
	// (closeTable): its chains keep connection tracking on in the
	// namespace, which translates their packets (and its reply routing
	// brings the app's answers to transparent passthroughs back).
	held       map[*net.TCPConn]struct{}
	closeTable bool
	// heldFrom counts the held connections by client address: a
	// transparent passthrough must not use one of their tuples (see
	// sourcePort).
	heldFrom map[netip.AddrPort]int
}

type subscription struct {
	id     uint64
	sess   *session
	port   uint16
	mode   string
	filter *httpfilter.Filter
	wire   *protocol.HTTPFilter // as subscribed, for policy edits
	drops  *mirrorDrops         // shared by copies of the subscription
}

func (s *subscription) unfilteredSteal() bool { return s.mode == protocol.ModeSteal && s.filter == nil }
func (s *subscription) filteredSteal() bool   { return s.mode == protocol.ModeSteal && s.filter != nil }

func newIncoming(srv *Server) *incoming {
	return &incoming{srv: srv, log: srv.Log, ports: map[uint16][]*subscription{}, warned: map[[2]uint64]bool{},
		redirected: map[uint16]bool{}, takeovers: map[uint16]bool{}, spliced: map[*net.TCPConn]struct{}{}, held: map[*net.TCPConn]struct{}{}, heldFrom: map[netip.AddrPort]int{}}
}

// subscribe adds a subscription for ss, installing the port's redirect rule
// when it is the first.
func (in *incoming) subscribe(ss *session, req protocol.Request) protocol.Response {
	if req.Port == 0 {
		return protocol.Response{Errno: int(syscall.EINVAL), Error: "subscribe: port 0"}
	}
	mode := req.Mode
	if mode == "" {
		mode = protocol.ModeMirror
	}
	if mode != protocol.ModeMirror && mode != protocol.ModeSteal {
		return protocol.Response{Errno: int(syscall.EINVAL), Error: fmt.Sprintf("subscribe: unknown mode %q (want mirror or steal)", mode)}
	}
	filter, err := httpfilter.CompileWire(req.Filter)
	if err != nil {
		return protocol.Response{Errno: int(syscall.EINVAL), Error: err.Error()}
	}
	if mode == protocol.ModeMirror {
		filter = nil // mirror copies whole connections
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	sub := &subscription{sess: ss, port: req.Port, mode: mode, filter: filter, wire: req.Filter, drops: newMirrorDrops(req.MirrorRate)}
	var warnings []string
	for _, o := range in.ports[req.Port] {
		if o.sess == ss {
			return protocol.Response{Errno: int(syscall.EADDRINUSE), Error: fmt.Sprintf("port %d is already subscribed by this session", req.Port)}
		}
		switch {
		case sub.unfilteredSteal() && o.unfilteredSteal():
			return protocol.Response{Errno: int(syscall.EADDRINUSE), Error: fmt.Sprintf(
				"port %d is already stolen by session %s without a filter: only one unfiltered stealer per port; add incoming.http_filter (both sessions) to share it, or use incoming.mode mirror", req.Port, o.sess.id)}
		case sub.unfilteredSteal() && o.filteredSteal():
			return protocol.Response{Errno: int(syscall.EADDRINUSE), Error: fmt.Sprintf(
				"port %d is already stolen by session %s with filter %v: an unfiltered steal would take its requests; add incoming.http_filter to share the port", req.Port, o.sess.id, o.filter)}
		case sub.filteredSteal() && o.unfilteredSteal():
			return protocol.Response{Errno: int(syscall.EADDRINUSE), Error: fmt.Sprintf(
				"port %d is already stolen by session %s without a filter, so no request would reach your filter; ask them to add incoming.http_filter", req.Port, o.sess.id)}
		case sub.filteredSteal() && o.filteredSteal() && httpfilter.Overlaps(o.filter, sub.filter):
			warnings = append(warnings, fmt.Sprintf(
				"your filter %v overlaps on port %d with the filter %v of session %s, which subscribed earlier: requests matching both go to that session", sub.filter, req.Port, o.filter, o.sess.id))
		}
	}
	if err := in.ensureListener(); err != nil {
		return protocol.ErrorResponse(err)
	}
	in.ports[req.Port] = append(slices.Clone(in.ports[req.Port]), sub)
	if err := in.route(req.Port); err != nil {
		in.ports[req.Port] = slices.DeleteFunc(slices.Clone(in.ports[req.Port]), func(s *subscription) bool { return s == sub })
		if len(in.ports[req.Port]) == 0 {
			delete(in.ports, req.Port)
		}
		in.route(req.Port)
		return protocol.ErrorResponse(fmt.Errorf("redirecting port %d: %w", req.Port, err))
	}
	if len(in.redirected) > 0 {
		in.closeTable = false
	}
	if mode == protocol.ModeSteal && !in.takeovers[req.Port] && in.srv.Target.NetNS() != "" {
		// Keep-alive connections opened before the rule would never see
		// it: close each when it is quiet, so its client reconnects
		// through the agent (mirror leaves them alone).
		in.takeovers[req.Port] = true
		go in.takeover(req.Port)
	}
	in.seq++
	sub.id = in.seq
	in.log.Info("subscribed", "session", ss.id, "port", req.Port, "mode", mode, "filter", sub.filter.String())
	return protocol.Response{Warnings: warnings}
}

// unsubscribe removes ss's subscription to port (all ports when port is 0).
func (in *incoming) unsubscribe(ss *session, port uint16) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for p, subs := range in.ports {
		if port != 0 && p != port {
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(subs), func(s *subscription) bool { return s.sess == ss })
		if len(kept) == len(subs) {
			continue
		}
		if len(kept) == 0 {
			delete(in.ports, p)
		} else {
			in.ports[p] = kept
		}
		if err := in.route(p); err != nil {
			in.log.Warn("redirecting a port", "port", p, "err", err)
		}
		in.log.Info("unsubscribed", "session", ss.id, "port", p)
	}
	if len(in.ports) == 0 {
		in.closeCapture()
	}
	if len(in.redirected) == 0 && in.redir != nil {
		// No port is redirected any more: remove the table entirely, once
		// no connection passed through to the app needs its reply routing.
		in.closeTable = true
		in.maybeCloseTable()
	}
}

// maybeCloseTable removes the redirect table when asked to and no
// connection to the app is left. Called with in.mu held.
func (in *incoming) maybeCloseTable() {
	if in.closeTable && len(in.held) == 0 && len(in.redirected) == 0 {
		in.closeTable = false
		in.removeRules()
	}
}

// hold counts the redirected connection c until release is called
// (once).
func (in *incoming) hold(c *net.TCPConn) (release func()) {
	return in.holdFrom(c, c.RemoteAddr().(*net.TCPAddr).AddrPort())
}

// holdFrom is hold for a connection from client.
func (in *incoming) holdFrom(c *net.TCPConn, client netip.AddrPort) (release func()) {
	client = unmap(client)
	in.mu.Lock()
	in.held[c] = struct{}{}
	in.heldFrom[client]++
	in.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			in.mu.Lock()
			delete(in.held, c)
			if in.heldFrom[client]--; in.heldFrom[client] <= 0 {
				delete(in.heldFrom, client)
			}
			in.maybeCloseTable()
			in.mu.Unlock()
		})
	}
}

// stopRedirects removes every subscription and redirect rule, leaving the
// table (its reply routing) to the connections still passed through.
func (in *incoming) stopRedirects() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.redir != nil {
		for p := range in.redirected {
			if err := in.redir.Unredirect(p); err != nil {
				in.log.Warn("removing redirect rule", "port", p, "err", err)
			}
		}
	}
	in.redirected = map[uint16]bool{}
	in.closeCapture()
	in.ports = map[uint16][]*subscription{}
}

// close stops the listener, closes the connections still held and then
// removes every rule. In that order: the connections' FINs and resets go
// out while the table's chains still translate them (see held); sent
// after, a packet leaves with the agent's port as its source, and its
// client, which never hears of it, hangs.
func (in *incoming) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.ports = map[uint16][]*subscription{}
	in.closeCapture()
	if in.ln != nil {
		in.ln.Close()
		in.ln = nil
	}
	if in.http != nil {
		in.http.close()
	}
	for c := range in.held {
		c.Close()
	}
	in.removeRules()
}

// holding is the number of redirected connections held.
func (in *incoming) holding() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.held)
}

// removeRules deletes the redirect table. Called with in.mu held.
func (in *incoming) removeRules() {
	in.redirected = map[uint16]bool{}
	if in.redir != nil {
		if err := in.redir.Close(); err != nil {
			in.log.Warn("removing redirect table", "err", err)
		}
		in.redir = nil
	}
}

// abort resets the redirected connections and then removes the redirect
// rules (see Server.TargetExited). The resets go first: when the target's
// pod is deleted, its network goes away moments after its app, and a reset
// sent later never reaches its client, which would hang.
func (in *incoming) abort() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.log.Info("resetting the redirected connections and removing the redirect rules")
	in.closeCapture()
	if in.ln != nil {
		in.ln.Close()
		in.ln = nil
		n := 0
		if in.http != nil {
			n = in.http.reset()
		}
		for c := range in.spliced {
			resetConn(c)
		}
		killed, err := in.srv.killConnections(in.lnPort)
		if err != nil {
			in.log.Warn("resetting the redirected connections", "err", err)
		}
		in.log.Info("reset the redirected connections", "http", n, "spliced", len(in.spliced), "others", killed)
	}
	in.removeRules()
}

// ensureListener starts the listener redirected connections land on, in
// the target's network namespace, and the redirector. Called with in.mu held.
func (in *incoming) ensureListener() error {
	if in.ln == nil {
		ln, err := in.srv.Target.Listen("tcp", ":0")
		if err != nil {
			return fmt.Errorf("listening for redirected connections in the target's network: %w", err)
		}
		in.ln = ln
		in.lnPort = uint16(ln.Addr().(*net.TCPAddr).Port)
		in.http = newHTTPRouter(in)
		go in.accept(ln)
	}
	if in.redir == nil {
		r, err := in.srv.newRedirector()
		if err != nil {
			return err
		}
		in.redir = r
		in.transparent = in.srv.Target.NetNS() != ""
	}
	return nil
}

func (in *incoming) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go in.handle(c.(*net.TCPConn))
	}
}

// snapshot returns the port's subscriptions in subscription order, leaving
// out sessions that are disconnected (waiting to resume): their traffic
// goes to the app meanwhile. The slice is shared (in.ports is copied on
// write, or appended to): callers must not change it. It is taken for
// every request passed through: no copy unless a session is detached.
func (in *incoming) snapshot(port uint16) []*subscription {
	in.mu.Lock()
	subs := in.ports[port]
	in.mu.Unlock()
	for i, s := range subs {
		if !s.sess.attached() {
			kept := slices.Clone(subs[:i])
			for _, s := range subs[i+1:] {
				if s.sess.attached() {
					kept = append(kept, s)
				}
			}
			return kept
		}
	}
	return subs
}

// handle routes one redirected connection.
func (in *incoming) handle(c *net.TCPConn) {
	release := in.hold(c)
	routed := false
	defer func() {
		if !routed {
			release()
		}
	}()
	dst, err := in.srv.originalDst(c)
	if err != nil {
		in.log.Warn("redirected connection without an original destination; closing it", "client", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	subs := in.snapshot(dst.Port())
	var conn net.Conn = c
	if mirrors := in.mirrorSinks(subs, client, dst); len(mirrors) > 0 {
		conn = &teeConn{TCPConn: c, sinks: mirrors}
	}
	for _, s := range subs {
		if s.unfilteredSteal() {
			st, err := in.deliver(s, client, dst, false)
			if err == nil {
				splice.Join(asHalfCloser(conn), st)
				return
			}
			in.log.Warn("stolen connection could not reach its session; passing it through", "session", s.sess.id, "err", err)
			break
		}
	}
	for _, s := range subs {
		if s.filteredSteal() {
			routed = in.routeHTTP(conn, c, client, dst, release)
			return
		}
	}
	in.passthrough(conn, nil, client, dst)
}

// passthrough connects conn to the real destination (prefix: bytes
// already read from conn).
func (in *incoming) passthrough(conn net.Conn, prefix []byte, client, dst netip.AddrPort) {
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	up, err := in.dialApp(ctx, client, dst)
	cancel()
	if err != nil {
		in.log.Warn("passing a connection through to the app failed", "dst", dst.String(), "err", err)
		resetConn(conn)
		return
	}
	if len(prefix) > 0 {
		if _, err := up.Write(prefix); err != nil {
			up.Close()
			conn.Close()
			return
		}
	}
	if raw := rawConn(conn); raw != nil {
		defer in.trackSpliced(raw)()
	}
	splice.Join(asHalfCloser(conn), up.(splice.Conn))
}

// rawConn is the client's TCP connection under conn (a tee).
func rawConn(conn net.Conn) *net.TCPConn {
	switch c := conn.(type) {
	case *net.TCPConn:
		return c
	case *teeConn:
		return c.TCPConn
	}
	return nil
}

// dialApp connects to the app on behalf of client, from the client's own
// address when the target's routing allows (the deployed app keeps seeing
// its real clients, as without tether), else from the agent's.
func (in *incoming) dialApp(ctx context.Context, client, dst netip.AddrPort) (net.Conn, error) {
	in.mu.Lock()
	transparent := in.transparent
	if te, ok := in.redir.(interface{ TransparentErr() error }); ok && transparent {
		if err := te.TransparentErr(); err != nil {
			// Without the reply routing, a connection from the client's
			// address would never get its answer: do not even try.
			in.transparent, transparent = false, false
			in.log.Warn("passthrough connections come from the agent's address (the transparent routing could not be set up)", "err", err)
		}
	}
	in.mu.Unlock()
	if transparent {
		c, err := in.dialFrom(ctx, dst, client.Addr())
		if err == nil || appGone(err) || ctx.Err() != nil {
			return c, err
		}
		in.mu.Lock()
		in.transparent = false
		in.mu.Unlock()
		in.log.Warn("cannot pass connections through from their clients' addresses; the app sees the agent's address instead", "err", err)
	}
	return in.srv.Target.Dial(ctx, "tcp", dst.String())
}

// dialFrom connects to dst from the client's address, with a port of the
// agent's choosing that no connection it holds from that address uses:
// the kernel would pick any port free for this socket, and one equal to a
// held (redirected) connection's client port gives our SYN that
// connection's conntrack tuple, so it would be taken for part of it and
// never be answered.
func (in *incoming) dialFrom(ctx context.Context, dst netip.AddrPort, from netip.Addr) (net.Conn, error) {
	from = from.Unmap()
	var err error
	for range 8 {
		port := in.sourcePort(from)
		var c net.Conn
		c, err = in.srv.Target.DialFrom(ctx, "tcp", dst.String(), netip.AddrPortFrom(from, port))
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return c, err
		}
	}
	return nil, err
}

// sourcePort picks a port in the usual ephemeral range that no held
// connection from addr uses.
func (in *incoming) sourcePort(addr netip.Addr) uint16 {
	in.mu.Lock()
	defer in.mu.Unlock()
	for {
		p := uint16(ephemeralFirst + rand.IntN(ephemeralLast-ephemeralFirst+1))
		if in.heldFrom[netip.AddrPortFrom(addr, p)] == 0 {
			return p
		}
	}
}

// The Linux default ip_local_port_range.
const (
	ephemeralFirst = 32768
	ephemeralLast  = 60999
)

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// deliver opens a stream to the subscription's session for one connection.
func (in *incoming) deliver(s *subscription, client, dst netip.AddrPort, mirror bool) (protocol.Stream, error) {
	st, err := s.sess.open()
	if err != nil {
		return nil, err
	}
	if err := protocol.WriteFrame(st, protocol.Incoming{Port: dst.Port(), Client: client.String(), Dst: dst.String(), Mirror: mirror}); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// notify tells a session something (shown as a warning on its terminal).
func (in *incoming) notify(ss *session, msg string) {
	st, err := ss.open()
	if err != nil {
		return
	}
	protocol.WriteFrame(st, protocol.Incoming{Notice: msg})
	st.Close()
}

// routeHTTP hands an HTTP connection to the router, which calls release
// when it closes it, and returns true; or it passes non-HTTP traffic
// through and returns false.
func (in *incoming) routeHTTP(conn net.Conn, raw *net.TCPConn, client, dst netip.AddrPort, release func()) bool {
	br := bufio.NewReaderSize(conn, 4096)
	raw.SetReadDeadline(time.Now().Add(httpDetectTimeout))
	verdict := detectHTTP(br)
	raw.SetReadDeadline(time.Time{})
	if verdict != isHTTP {
		buffered, _ := br.Peek(br.Buffered())
		in.passthrough(conn, slices.Clone(buffered), client, dst)
		return false
	}
	buffered, _ := br.Peek(br.Buffered())
	if bytes.HasPrefix(buffered, []byte(h2Preface)) {
		// HTTP/2 (h2c): the router serves it, stream by stream.
		in.http.serve(&routedConn{Conn: conn, r: br, raw: raw, client: client, dst: dst, release: release})
		return true
	}
	return in.passHTTP1(conn, slices.Clone(buffered), raw, client, dst, release)
}

// passHTTP1 carries an HTTP/1 connection to the app request by request
// (passthrough: parsed, not served) until a session's filter takes a
// request; from that request on the router has the connection. It
// reports whether the router has it (and release with it).
func (in *incoming) passHTTP1(conn net.Conn, prefix []byte, raw *net.TCPConn, client, dst netip.AddrPort, release func()) bool {
	handed := false
	pc := &passthrough.Conn{
		Client: conn,
		Prefix: prefix,
		DialApp: func() (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
			defer cancel()
			return in.dialApp(ctx, client, dst)
		},
		Taken: func(r httpfilter.Request) bool {
			for _, s := range in.snapshot(dst.Port()) {
				if s.filteredSteal() && s.filter.Match(r) {
					return true
				}
			}
			return false
		},
		Handoff: func(c net.Conn) {
			handed = true
			in.http.serve(&routedConn{Conn: c, r: c, raw: raw, client: client, dst: dst, release: release})
		},
		Closing: in.http.draining.Load,
		Reset:   func() { resetConn(raw) },
	}
	// The drain and an exiting target see it as a spliced connection:
	// closed when quiet after an answer, reset when the app is gone.
	done := in.trackSpliced(raw)
	err := pc.Serve()
	done()
	if err != nil && !handed {
		in.log.Debug("an HTTP/1 connection passed through ended", "client", client.String(), "err", err)
	}
	return handed
}

type httpVerdict int

const (
	undecided httpVerdict = iota
	isHTTP
	notHTTP
)

// detectHTTP reads just enough of a connection to tell HTTP from other
// protocols: it decides as soon as the bytes so far rule HTTP in or out,
// and gives up (not HTTP) when the client stays silent.
func detectHTTP(br *bufio.Reader) httpVerdict {
	for n := 1; n <= len(h2Preface); n++ {
		head, err := br.Peek(n)
		if err != nil {
			return notHTTP // silence (a server-speaks-first protocol) or EOF
		}
		// Look at everything already buffered, not only n bytes.
		if more, _ := br.Peek(br.Buffered()); len(more) > len(head) {
			head = more
			n = len(more)
		}
		if v := classifyHTTP(head); v != undecided {
			return v
		}
	}
	return notHTTP
}

// classifyHTTP decides from a connection's first bytes whether it is an
// HTTP/1.x request line or the HTTP/2 preface.
func classifyHTTP(head []byte) httpVerdict {
	s := string(head)
	candidates := append([]string{h2Preface}, httpMethods...)
	prefixOfSome := false
	for _, c := range candidates {
		if len(s) >= len(c) && s[:len(c)] == c {
			return isHTTP
		}
		if len(s) < len(c) && c[:len(s)] == s {
			prefixOfSome = true
		}
	}
	if prefixOfSome {
		return undecided
	}
	return notHTTP
}

// asHalfCloser gives conn (a TCPConn or a wrapper of one) a CloseWrite.
func asHalfCloser(conn net.Conn) splice.Conn {
	if hc, ok := conn.(splice.Conn); ok {
		return hc
	}
	return closeWriteAdapter{conn}
}

type closeWriteAdapter struct{ net.Conn }

func (c closeWriteAdapter) CloseWrite() error {
	type cw interface{ CloseWrite() error }
	if x, ok := c.Conn.(interface{ Unwrap() net.Conn }); ok {
		if w, ok := x.Unwrap().(cw); ok {
			return w.CloseWrite()
		}
	}
	return nil
}

// --- HTTP detection ---

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var httpMethods = []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

// appGone reports whether a connection to the app failed because the app
// is not there (refused, or reset as its process exited): an answer about
// the app, not about the agent's way of reaching it.
func appGone(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// resetConn closes a client connection with a reset, as the kernel answers
// a connection to a port nobody listens on: the client sees the failure it
// would see without tether (the app is gone), not a hang nor an answer.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
