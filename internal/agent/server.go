package agent

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/netfilter"
	"github.com/tether-dev/tether/internal/policy"
	"github.com/tether-dev/tether/internal/protocol"
	"github.com/tether-dev/tether/internal/splice"
)

// DialTimeout bounds one outgoing connect made for a session.
const DialTimeout = protocol.DialTimeout

// Server accepts tether sessions and serves them from Target.
type Server struct {
	Target  Target
	Log     *slog.Logger
	Version string // agent build version, reported in the handshake
	// Table names the agent's nftables table (netfilter.TableName).
	Table string
	// Token, when set, must be presented by every client in its Hello.
	Token string
	// Grace is how long a session whose connection died is kept (with its
	// subscriptions) for the client to reconnect; 0 ends it at once.
	Grace time.Duration
	// NewRedirector, when set, replaces the nftables redirector (tests).
	NewRedirector func() (netfilter.Redirector, error)
	// OriginalDst, when set, replaces SO_ORIGINAL_DST (tests).
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)

	// ID is the container the server serves, as sessions name it
	// (Hello.Target); set by Node.
	ID string

	mu       sync.Mutex
	sessions map[string]*session
	// ended remembers the sessions an administrator ended, and why, so
	// that their clients are told instead of resuming.
	ended map[string]endedSession
	// endedLog is the operator's sessions that ended lately, for its
	// audit trail (see recordEnded).
	endedLog []protocol.SessionInfo
	inOnce   sync.Once
	in       atomic.Pointer[incoming]
	// names the target resolved, for the policies' hostname rules
	namesOnce sync.Once
	names     *resolvedNames
}

// incoming is the server's incoming-traffic state, made on first use.
func (s *Server) incoming() *incoming {
	s.inOnce.Do(func() { s.in.Store(newIncoming(s)) })
	return s.in.Load()
}

// incomingIfUsed is the incoming-traffic state, or nil when no session has
// asked for incoming traffic yet.
func (s *Server) incomingIfUsed() *incoming { return s.in.Load() }

// TargetExited is called when the target process has exited, before the
// server is stopped: its incoming traffic must not wait for the orderly
// shutdown (the pod's network goes away soon). The redirect rules go first,
// so new connections meet the kernel as they would without tether, then
// every redirected connection the agent holds is reset.
func (s *Server) TargetExited() {
	s.incoming().abort()
}

func (s *Server) newRedirector() (netfilter.Redirector, error) {
	if s.NewRedirector != nil {
		return s.NewRedirector()
	}
	ns := s.Target.NetNS()
	if ns == "" {
		return nil, errors.New("this target has no network namespace of its own: incoming traffic is not available")
	}
	table := s.Table
	if table == "" {
		table = netfilter.TableName(os.Getpid(), 0)
	}
	return netfilter.NewNftables(ns, table)
}

// killConnections resets established connections to port in the target.
func (s *Server) killConnections(port uint16) (int, error) {
	ns := s.Target.NetNS()
	if ns == "" {
		return 0, nil
	}
	return netfilter.KillConnections(ns, port)
}

func (s *Server) originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	if s.OriginalDst != nil {
		return s.OriginalDst(c)
	}
	return netfilter.OriginalDst(c)
}

// Serve accepts connections on ln until ctx ends or ln fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	return (&Node{Default: s, Log: s.Log, Token: s.Token}).Serve(ctx, ln)
}

// Shutdown is the server's orderly end. The rules first: new connections
// go straight to the app while the sessions are closed and the
// connections the agent passes to the app drain.
func (s *Server) Shutdown() {
	if in := s.incomingIfUsed(); in != nil {
		in.stopRedirects()
	}
	s.closeAll()
	if in := s.incomingIfUsed(); in != nil {
		in.drain(drainLimit)
		in.close()
	}
}

// Sessions returns the number of sessions, attached or waiting to resume.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if m := ss.currentMux(); m != nil {
			m.Close()
		}
	}
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// welcome answers a client's Hello: its token checked, the session it
// resumes or a new one (created).
func (s *Server) welcome(h protocol.Hello) (w protocol.Welcome, ss *session, created bool) {
	if s.Token != "" && subtle.ConstantTimeCompare([]byte(h.Token), []byte(s.Token)) != 1 {
		return protocol.Welcome{Error: "wrong or missing agent token: connect with the token of this agent (tether finds it on the agent's pod; for an agent started by hand set TETHER_AGENT_TOKEN)"}, nil, false
	}
	hostname, _ := s.Target.Hostname()
	s.mu.Lock()
	if s.sessions == nil {
		s.sessions = map[string]*session{}
	}
	if e, ok := s.ended[h.SessionID]; ok && h.SessionID != "" {
		s.mu.Unlock()
		return protocol.Welcome{Error: e.reason, Final: true}, nil, false
	}
	if h.SessionID != "" {
		ss = s.sessions[h.SessionID]
	}
	if ss != nil && ss.grant.Who() != h.Grant.Who() {
		// A session ID is no credential: another user's is a new session.
		ss = nil
	}
	var rules []policy.Rules
	var names map[string][]string
	if h.Grant != nil {
		rules, names = h.Grant.Policies, h.Grant.Names
	}
	pol, err := newSessionPolicy(rules, names)
	if err != nil {
		s.mu.Unlock()
		return protocol.Welcome{Error: err.Error(), Final: true}, nil, false
	}
	resumed := ss != nil
	if ss == nil {
		ss = &session{id: newSessionID(), client: h.Client, start: time.Now(), run: h.Run, grant: h.Grant}
		ss.pol.Store(pol)
		s.sessions[ss.id] = ss
		created = true
	}
	s.mu.Unlock()
	if resumed && h.Grant != nil {
		// The operator's grant of the reconnect has the policies as they
		// are now.
		s.setPolicy(ss, pol)
	}
	return protocol.Welcome{
		SessionID:    ss.id,
		Resumed:      resumed,
		Capabilities: protocol.Intersect(protocol.AllCapabilities, h.Capabilities),
		Target:       protocol.TargetInfo{PID: s.Target.PID(), Hostname: hostname, Agent: s.Version},
		Policies:     rules,
	}, ss, created
}

// serveConn serves a session's connection once the handshake (err) has
// given it session ss (created by it: ended if the handshake failed).
func (s *Server) serveConn(ctx context.Context, conn net.Conn, hello protocol.Hello, welcome protocol.Welcome, err error, ss *session, created bool) {
	if err != nil {
		s.Log.Warn("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		if created {
			s.endSession(ss)
		}
		return
	}
	mux, err := protocol.NewServerMux(conn)
	if err != nil {
		conn.Close()
		if created {
			s.endSession(ss)
		}
		return
	}
	gen := ss.attach(mux)
	s.mu.Lock()
	e, killed := s.ended[ss.id]
	s.mu.Unlock()
	if killed {
		// Ended by an administrator while this connection was being set
		// up: tell the client, as kill does for attached ones.
		if st, err := mux.Open(); err == nil {
			st.SetWriteDeadline(time.Now().Add(2 * time.Second))
			protocol.WriteFrame(st, protocol.Incoming{Ended: e.reason})
			st.Close()
		}
		time.AfterFunc(200*time.Millisecond, func() { mux.Close() })
	}
	if welcome.Resumed {
		s.Log.Info("session resumed", "session", ss.id, "remote", conn.RemoteAddr().String())
	} else {
		s.Log.Info("session started", "session", ss.id, "client", hello.Client, "remote", conn.RemoteAddr().String())
	}
	defer func() {
		mux.Close()
		closing, current := ss.detach(gen)
		if !current {
			return // a newer connection has taken over
		}
		if closing || s.Grace <= 0 {
			s.endSession(ss)
			return
		}
		s.Log.Info("session detached; keeping it for a reconnect", "session", ss.id, "grace", s.Grace.String())
		ss.startGrace(s.Grace, gen, func() { s.endSession(ss) })
	}()
	for {
		st, err := mux.Accept()
		if err != nil {
			return
		}
		go s.serveStream(ctx, ss, st)
	}
}

// endSession removes a session and everything it subscribed.
func (s *Server) endSession(ss *session) {
	var last protocol.SessionInfo
	if ss.grant != nil {
		last = s.describe(ss) // for the audit trail, before it goes
	}
	if in := s.incomingIfUsed(); in != nil {
		in.unsubscribe(ss, 0)
	}
	s.mu.Lock()
	_, present := s.sessions[ss.id]
	delete(s.sessions, ss.id)
	if present && ss.grant != nil {
		last.Ended, last.Connected = time.Now(), false
		s.recordEnded(last)
	}
	s.mu.Unlock()
	if present {
		s.Log.Info("session ended", "session", ss.id, "duration", time.Since(ss.start).Round(time.Millisecond).String())
	}
}

func (s *Server) serveStream(ctx context.Context, ss *session, st protocol.Stream) {
	defer st.Close()
	var req protocol.Request
	if err := protocol.ReadFrame(st, &req); err != nil {
		s.Log.Warn("bad request", "session", ss.id, "err", err)
		return
	}
	files := fileOps{root: s.Target.Root(), ss: ss}
	switch req.Op {
	case protocol.OpRPC:
		s.serveRPC(ss, st)
	case protocol.OpDial:
		s.dial(ctx, ss, st, req)
	case protocol.OpRead:
		if err := files.read(req, st); err != nil {
			s.Log.Debug("read failed", "session", ss.id, "err", err)
		}
	case protocol.OpWrite:
		protocol.WriteFrame(st, files.write(req, st))
	default:
		protocol.WriteFrame(st, s.answer(ss, req))
	}
}

// answer serves a request whose whole answer is one Response.
func (s *Server) answer(ss *session, req protocol.Request) protocol.Response {
	files := fileOps{root: s.Target.Root(), ss: ss}
	var resp protocol.Response
	switch req.Op {
	case protocol.OpEnv:
		env, err := s.Target.Environ()
		if err != nil {
			return protocol.ErrorResponse(err)
		}
		resp.Env, resp.Refused = ss.filterEnv(env)
	case protocol.OpHostname:
		h, err := s.Target.Hostname()
		if err != nil {
			return protocol.ErrorResponse(err)
		}
		resp.Hostname = h
	case protocol.OpStat:
		resp = files.stat(req)
	case protocol.OpReadDir:
		resp = files.readdir(req)
	case protocol.OpReadlink:
		resp = files.readlink(req)
	case protocol.OpMkdir:
		resp = files.mkdir(req)
	case protocol.OpRemove:
		resp = files.remove(req)
	case protocol.OpRename:
		resp = files.rename(req)
	case protocol.OpSetAttr:
		resp = files.setattr(req)
	case protocol.OpSymlink:
		resp = files.symlink(req)
	case protocol.OpLink:
		resp = files.link(req)
	case protocol.OpSubscribe:
		if msg := ss.grant.Refusal(subscribeAction(req)); msg != "" {
			s.Log.Warn("refused", "session", ss.id, "user", ss.grant.Who(), "action", subscribeAction(req), "port", req.Port)
			return ss.refuse(subscribeAction(req), msg)
		}
		if err := ss.checkSubscribe(req); err != nil {
			s.Log.Warn("refused by a policy", "session", ss.id, "user", ss.grant.Who(), "action", subscribeAction(req), "port", req.Port, "err", err)
			return protocol.ErrorResponse(err)
		}
		resp = s.incoming().subscribe(ss, req)
	case protocol.OpUnsubscribe:
		s.incoming().unsubscribe(ss, req.Port)
	case protocol.OpClose:
		ss.markClosing()
	default:
		resp = protocol.Response{Errno: int(syscall.ENOSYS), Error: fmt.Sprintf("unknown request %q: the client is newer than this agent", req.Op)}
	}
	return resp
}

// serveRPC answers many small requests on one long-lived stream, each
// tagged with an id, concurrently: no stream set-up per stat or readlink.
func (s *Server) serveRPC(ss *session, st protocol.Stream) {
	var wmu sync.Mutex
	for {
		var call protocol.RPCCall
		if err := protocol.ReadFrame(st, &call); err != nil {
			return
		}
		go func() {
			reply := protocol.RPCReply{ID: call.ID}
			if protocol.StreamOnly(call.Req.Op) {
				reply.Resp = protocol.Response{Errno: int(syscall.EINVAL), Error: fmt.Sprintf("%s needs a stream of its own", call.Req.Op)}
			} else {
				reply.Resp = s.answer(ss, call.Req)
			}
			wmu.Lock()
			defer wmu.Unlock()
			protocol.WriteFrame(st, reply)
		}()
	}
}

func (s *Server) dial(ctx context.Context, ss *session, st protocol.Stream, req protocol.Request) {
	if req.Network != "tcp" && req.Network != "udp" {
		protocol.WriteFrame(st, protocol.Response{Errno: int(syscall.EAFNOSUPPORT), Error: "unsupported network " + req.Network})
		return
	}
	if err := s.checkDial(ss, req.Network, req.Addr); err != nil {
		s.Log.Debug("dial refused by a policy", "session", ss.id, "network", req.Network, "addr", req.Addr, "err", err)
		protocol.WriteFrame(st, protocol.ErrorResponse(err))
		return
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	c, err := s.Target.Dial(dctx, req.Network, req.Addr)
	cancel()
	if err != nil {
		resp := protocol.ErrorResponse(err)
		if errors.Is(err, context.DeadlineExceeded) {
			resp.Errno = int(syscall.ETIMEDOUT)
		}
		protocol.WriteFrame(st, resp)
		s.Log.Debug("dial failed", "session", ss.id, "network", req.Network, "addr", req.Addr, "err", err)
		return
	}
	defer c.Close()
	defer ss.trackConn(c, req.Network, req.Addr)()
	if err := protocol.WriteFrame(st, protocol.Response{LocalAddr: c.LocalAddr().String()}); err != nil {
		return
	}
	if req.Network == "udp" {
		var answers func([]byte)
		if p := ss.policy(); p != nil && p.hostnames && strings.HasSuffix(req.Addr, ":53") {
			answers = s.resolved().observe // the pod's name server
		}
		relayUDP(st, c, answers)
		return
	}
	if hc, ok := c.(splice.Conn); ok {
		splice.Join(st, hc)
	}
}

// relayUDP carries datagrams between a stream (length-prefixed) and a
// connected UDP socket.
// Each datagram that comes back goes to answers too when set.
func relayUDP(st protocol.Stream, c net.Conn, answers func([]byte)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, protocol.MaxDatagram)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					// An ICMP port unreachable: keep going, as the app's own socket would.
					continue
				}
				return
			}
			if answers != nil {
				answers(buf[:n])
			}
			if err := protocol.WriteDatagram(st, buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, protocol.MaxDatagram)
	for {
		n, err := protocol.ReadDatagram(st, buf)
		if err != nil {
			break
		}
		c.Write(buf[:n])
	}
	c.Close()
	<-done
}
