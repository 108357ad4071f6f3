// Package session is the client runtime of one `tether exec`: it connects
// to the agent, fetches the target's context (environment, hostname, DNS
// files), makes the routing decisions (outgoing filters, fs mode lists, DNS
// filter) and carries remote connections and file operations for the
// seccomp supervisor in package layer.
package session

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/layer"
	"github.com/tether-dev/tether/internal/protocol"
	"github.com/tether-dev/tether/internal/version"
)

// Options configure a session.
type Options struct {
	Config *config.Config
	Log    *slog.Logger
	// LocalDirs stay local whatever the fs mode (the working directory, the
	// home directory, the command's directory).
	LocalDirs []string
	// Messages receives user-facing lines ("tether: ..."); nil discards
	// them. Quiet keeps informational ones out (warnings still show).
	Messages io.Writer
	Quiet    bool
	// Agent is what the session presents to its agent.
	Agent Credentials
	// Redial opens a new connection to the agent and returns it with what
	// to present to it; with it the session survives tunnel drops (it
	// reconnects and resumes) and the loss of its agent (a new agent, maybe
	// for a new target pod: it subscribes again). Nil: no reconnect. Its
	// errors are shown to the user as warnings while reconnecting.
	Redial func(ctx context.Context) (conn net.Conn, agent Credentials, err error)
	// Run names this tether run ("": a new NewRunID); a run that split
	// queues before its session started gives the ID it split them for.
	Run string
}

// Credentials is what a session presents to its agent: the agent's token
// ("" when it has none) and, for an agent that serves the containers of
// its node, the container whose context the session wants ("": the
// agent's own target).
type Credentials struct {
	Token, Target string
}

// Session is one connected `tether exec`. It implements layer.Session.
type Session struct {
	cfg   *config.Config
	log   *slog.Logger
	msgs  io.Writer
	quiet bool
	msgMu sync.Mutex
	// refusedSeen: the policy rules whose refusals were shown (once each)
	refusedSeen map[string]bool
	redial      func(ctx context.Context) (net.Conn, Credentials, error)

	muxMu     sync.Mutex
	mux       protocol.Mux
	welcome   protocol.Welcome
	reconnect chan struct{} // closed when a reconnect attempt ends
	lost      chan struct{} // closed when the session is gone for good
	closing   atomic.Bool
	run       string // Hello.Run: this session and its replicas' share it

	endOnce sync.Once
	ended   chan struct{} // closed when an administrator ended the session
	endWhy  string

	hostname  string
	remoteEnv []string
	virtual   map[string][]byte
	servers   map[netip.AddrPort]bool // the target's nameservers (port 53)

	fs        *fsRouter
	out       *outgoingPolicy
	dnsLocal  *nameFilter
	dnsRemote *nameFilter
	names     *nameCache

	proxy *tcpProxy
	in    *incomingState
	rpc   rpcClient

	closeOnce sync.Once
	closeErr  error

	replMu   sync.Mutex
	replicas map[string]*replica // by pod UID: the workload's other pods (replicas.go)
	adopted  *adoption           // a replica's agent session the next reconnect takes over

	relayMu sync.Mutex
	relays  map[netip.AddrPort]*udpRelay
	byRelay map[netip.AddrPort]netip.AddrPort // relay address -> real destination
}

var _ layer.Session = (*Session)(nil)

// DialAgent opens the raw connection to an agent started by other means.
func DialAgent(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	d.Timeout = 10 * time.Second
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the agent at %s: %w (is tether-agent running there? check --agent-addr)", addr, err)
	}
	return c, nil
}

// New runs the handshake on conn, fetches the target's context and starts
// the local proxy. Close releases everything.
func New(ctx context.Context, conn net.Conn, opt Options) (*Session, error) {
	cfg := opt.Config
	if cfg == nil {
		cfg = &config.Config{}
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	run := opt.Run
	if run == "" {
		run = NewRunID()
	}
	w, mux, err := handshake(conn, opt.Agent, "", run)
	if err != nil {
		return nil, err
	}
	s := &Session{
		cfg: cfg, log: log, mux: mux, welcome: w, msgs: opt.Messages, quiet: opt.Quiet,
		redial: opt.Redial, lost: make(chan struct{}), run: run, ended: make(chan struct{}),
		virtual: map[string][]byte{}, servers: map[netip.AddrPort]bool{},
		relays: map[netip.AddrPort]*udpRelay{}, byRelay: map[netip.AddrPort]netip.AddrPort{},
		names: newNameCache(), in: newIncomingState(), replicas: map[string]*replica{},
	}
	s.rpc.s = s
	if err := s.setup(ctx, opt); err != nil {
		s.Close()
		return nil, err
	}
	go s.watch()
	return s, nil
}

// handshake runs the protocol handshake on conn and starts the mux.
func handshake(conn net.Conn, agent Credentials, resume, run string) (protocol.Welcome, protocol.Mux, error) {
	w, err := protocol.ClientHandshake(conn, protocol.Hello{Client: "tether/" + version.Version, Token: agent.Token, Target: agent.Target, SessionID: resume, Run: run})
	if err != nil {
		conn.Close()
		return w, nil, err
	}
	mux, err := protocol.NewClientMux(conn)
	if err != nil {
		conn.Close()
		return w, nil, err
	}
	return w, mux, nil
}

func (s *Session) setup(ctx context.Context, opt Options) error {
	cfg := s.cfg
	var err error
	fsCfg, fsMode := withPolicies(cfg.FS, cfg.FSMode(), s.welcome.Policies)
	if s.fs, err = newFSRouter(fsCfg, fsMode, opt.LocalDirs); err != nil {
		return err
	}
	if len(s.welcome.Policies) > 0 {
		names := make([]string, len(s.welcome.Policies))
		for i, p := range s.welcome.Policies {
			names[i] = p.Name
		}
		s.message("", "the platform team's policies apply to this session: %s (tether policy check shows what they refuse)", strings.Join(names, ", "))
	}
	if s.dnsLocal, err = newNameFilter("dns.filter.local", cfg.DNS.Filter.Local); err != nil {
		return err
	}
	if s.dnsRemote, err = newNameFilter("dns.filter.remote", cfg.DNS.Filter.Remote); err != nil {
		return err
	}
	s.out = &outgoingPolicy{tcp: cfg.OutgoingTCP(), udp: cfg.OutgoingUDP(), ignoreLocalhost: cfg.IgnoreLocalhost(), hostsOf: s.names.namesOf}
	if s.out.local, err = config.ParseOutgoingFilter(cfg.Outgoing.Filter.Local); err != nil {
		return err
	}
	if s.out.remote, err = config.ParseOutgoingFilter(cfg.Outgoing.Filter.Remote); err != nil {
		return err
	}
	// The target's context, fetched in parallel: start-up is what users feel.
	var (
		wg                                   sync.WaitGroup
		envErr, hostErr                      error
		envResp, hostResp                    protocol.Response
		hostnameFile, resolvConf, hosts      []byte
		hostnameFileErr, resolvErr, hostsErr error
	)
	fetch := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	if cfg.EnvEnabled() {
		fetch(func() { envResp, envErr = s.call(ctx, protocol.Request{Op: protocol.OpEnv}) })
	}
	if cfg.HostnameEnabled() {
		fetch(func() { hostResp, hostErr = s.call(ctx, protocol.Request{Op: protocol.OpHostname}) })
		fetch(func() { hostnameFile, hostnameFileErr = s.readAll(ctx, "/etc/hostname") })
	}
	if cfg.DNSEnabled() {
		fetch(func() { resolvConf, resolvErr = s.readAll(ctx, "/etc/resolv.conf") })
		fetch(func() { hosts, hostsErr = s.readAll(ctx, "/etc/hosts") })
	}
	wg.Wait()
	if cfg.EnvEnabled() {
		if envErr != nil {
			return fmt.Errorf("reading the target's environment: %w", envErr)
		}
		s.remoteEnv = envResp.Env
	}
	if cfg.HostnameEnabled() {
		if hostErr != nil {
			return fmt.Errorf("reading the target's hostname: %w", hostErr)
		}
		s.hostname = hostResp.Hostname
		s.virtual["/proc/sys/kernel/hostname"] = []byte(s.hostname + "\n")
		if hostnameFileErr == nil {
			s.virtual["/etc/hostname"] = hostnameFile
		} else {
			s.virtual["/etc/hostname"] = []byte(s.hostname + "\n")
		}
	}
	if cfg.DNSEnabled() {
		if resolvErr == nil {
			s.virtual["/etc/resolv.conf"] = resolvConfForLocal(resolvConf)
			for _, ns := range nameservers(resolvConf) {
				s.servers[netip.AddrPortFrom(ns, 53)] = true
			}
		} else {
			s.log.Warn("the target has no readable /etc/resolv.conf; names resolve locally", "err", resolvErr)
		}
		if hostsErr == nil {
			s.virtual["/etc/hosts"] = hosts
		}
	}
	s.proxy, err = newTCPProxy(s)
	if err != nil {
		return err
	}
	go s.acceptIncoming(s.mux)
	return nil
}

// say prints an informational line for the user (unless quiet).
func (s *Session) say(format string, args ...any) {
	if !s.quiet {
		s.message("", format, args...)
	}
}

// warn prints a warning for the user, even when quiet.
func (s *Session) warn(format string, args ...any) { s.message("warning: ", format, args...) }

// Warnf shows the user a warning (for the supervisor).
func (s *Session) Warnf(format string, args ...any) { s.warn(format, args...) }

// fail prints an error for the user, even when quiet.
func (s *Session) fail(format string, args ...any) { s.message("error: ", format, args...) }

func (s *Session) message(prefix, format string, args ...any) {
	if s.msgs == nil {
		return
	}
	s.msgMu.Lock()
	defer s.msgMu.Unlock()
	fmt.Fprintf(s.msgs, "tether: "+prefix+format+"\n", args...)
}

// Close ends the session: it tells the agent (so subscriptions go at once,
// without the resumption grace period), then closes the proxy, relays and
// the agent connection. It may be called more than once.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.closeReplicas()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.call(ctx, protocol.Request{Op: protocol.OpClose})
		cancel()
		if s.proxy != nil {
			s.proxy.close()
		}
		s.relayMu.Lock()
		for _, r := range s.relays {
			r.close()
		}
		s.relayMu.Unlock()
		s.muxMu.Lock()
		s.closeErr = s.mux.Close()
		s.muxMu.Unlock()
	})
	return s.closeErr
}

// Done is closed when the session is gone for good (the connection to the
// agent died and could not be restored).
func (s *Session) Done() <-chan struct{} { return s.lost }

// Ended is closed when an administrator ended the session (tether
// sessions kill); EndedReason says who and why.
func (s *Session) Ended() <-chan struct{} { return s.ended }

// EndedReason is what the agent said when it ended the session.
func (s *Session) EndedReason() string {
	select {
	case <-s.ended:
		return s.endWhy
	default:
		return ""
	}
}

// end records that the session was ended for good; it stops reconnecting.
func (s *Session) end(why string) {
	s.endOnce.Do(func() {
		s.endWhy = why
		s.closing.Store(true)
		close(s.ended)
	})
}

// Run names this tether run: its sessions on every replica share it.
func (s *Session) Run() string { return s.run }

// NewRunID returns a random run name.
func NewRunID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID is the session id the agent assigned.
func (s *Session) ID() string {
	s.muxMu.Lock()
	defer s.muxMu.Unlock()
	return s.welcome.SessionID
}

// Target describes what the agent serves.
func (s *Session) Target() protocol.TargetInfo {
	s.muxMu.Lock()
	defer s.muxMu.Unlock()
	return s.welcome.Target
}

// Env returns the command's environment built from local and the target's.
func (s *Session) Env(local []string) ([]string, error) {
	var fileVars map[string]string
	if f := s.cfg.Env.EnvFile; f != "" {
		var err error
		if fileVars, err = config.LoadEnvFile(f); err != nil {
			return nil, err
		}
	}
	return BuildEnv(local, s.remoteEnv, s.cfg.Env, s.cfg.EnvEnabled(), fileVars), nil
}

// open starts a request stream and writes req.
func (s *Session) open(ctx context.Context, req protocol.Request) (protocol.Stream, error) {
	st, err := s.openStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("the connection to the agent is gone: %w", syscallErr(err))
	}
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	if err := protocol.WriteFrame(st, req); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// syscallErr gives transport failures an errno the supervisor can return.
func syscallErr(err error) error {
	return &protocol.RemoteError{Errno: syscall.ENETDOWN, Msg: err.Error()}
}

func readResponseFrame(st protocol.Stream) (protocol.Response, error) {
	var resp protocol.Response
	if err := protocol.ReadFrame(st, &resp); err != nil {
		return resp, fmt.Errorf("reading the agent's answer: %w", syscallErr(err))
	}
	return resp, resp.Err()
}

// readResponse reads a Response and shows what policies refused.
func (s *Session) readResponse(st protocol.Stream) (protocol.Response, error) {
	resp, err := readResponseFrame(st)
	s.noteRefused(resp)
	return resp, err
}

// noteRefused tells the user what a policy refused, once per policy and
// rule: a program that retries a refused connection in a loop gets one
// line, and its errno each time.
func (s *Session) noteRefused(resp protocol.Response) {
	for _, r := range resp.Refused {
		key := r.Policy + "\x00" + r.Rule
		s.msgMu.Lock()
		if s.refusedSeen == nil {
			s.refusedSeen = map[string]bool{}
		}
		seen := s.refusedSeen[key]
		s.refusedSeen[key] = true
		s.msgMu.Unlock()
		if !seen {
			s.warn("%s (shown once per rule; tether policy check lists what applies)", r.Error())
		}
	}
}

// call is a request whose whole answer is one Response.
func (s *Session) call(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	if s.useRPC() && !protocol.StreamOnly(req.Op) {
		resp, err := s.rpc.call(ctx, req)
		s.noteRefused(resp)
		return resp, err
	}
	st, err := s.open(ctx, req)
	if err != nil {
		return protocol.Response{}, err
	}
	defer st.Close()
	return s.readResponse(st)
}

func (s *Session) readAll(ctx context.Context, p string) ([]byte, error) {
	_, rc, err := s.ReadFile(ctx, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// resolvConfForLocal is the target's resolv.conf plus "options use-vc", so
// resolvers query over TCP and take the one connect() redirect path (c-ares
// checks UDP reply sources and would drop relayed answers).
func resolvConfForLocal(b []byte) []byte {
	out := bytes.TrimRight(b, "\n")
	out = append(out, "\n# added by tether: resolve over TCP through the target\noptions use-vc\n"...)
	return out
}

// nameservers lists the nameserver addresses in a resolv.conf.
func nameservers(b []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// --- layer.Session: files ---

func (s *Session) RouteFile(p string) layer.Route { return s.fs.route(p) }

func (s *Session) VirtualFile(p string) ([]byte, bool) {
	b, ok := s.virtual[p]
	return b, ok
}

func (s *Session) Hostname() (string, bool) {
	return s.hostname, s.cfg.HostnameEnabled() && s.hostname != ""
}

func (s *Session) Stat(ctx context.Context, p string, follow bool) (*protocol.Stat, error) {
	resp, err := s.call(ctx, protocol.Request{Op: protocol.OpStat, Path: p, NoFollow: !follow})
	if err != nil {
		return nil, err
	}
	if resp.Stat == nil {
		return nil, errors.New("agent sent no stat")
	}
	return resp.Stat, nil
}

// streamReader is a file's content on its stream; Close ends the stream.
type streamReader struct {
	io.Reader
	st protocol.Stream
}

func (r streamReader) Close() error { return r.st.Close() }

func (s *Session) ReadFile(ctx context.Context, p string) (*protocol.Stat, io.ReadCloser, error) {
	st, err := s.open(ctx, protocol.Request{Op: protocol.OpRead, Path: p})
	if err != nil {
		return nil, nil, err
	}
	resp, err := s.readResponse(st)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	if resp.Stat == nil {
		st.Close()
		return nil, nil, errors.New("agent sent no stat")
	}
	return resp.Stat, streamReader{io.LimitReader(st, resp.Stat.Size), st}, nil
}

func (s *Session) ReadDir(ctx context.Context, p string) ([]protocol.DirEntry, *protocol.Stat, error) {
	resp, err := s.call(ctx, protocol.Request{Op: protocol.OpReadDir, Path: p})
	return resp.Entries, resp.Stat, err
}

func (s *Session) Readlink(ctx context.Context, p string) (string, error) {
	resp, err := s.call(ctx, protocol.Request{Op: protocol.OpReadlink, Path: p})
	return resp.Target, err
}

func (s *Session) WriteFile(ctx context.Context, p string, r io.Reader, size int64, perm uint32) error {
	st, err := s.open(ctx, protocol.Request{Op: protocol.OpWrite, Path: p, Size: size, Perm: perm})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := io.CopyN(st, r, size); err != nil {
		return fmt.Errorf("sending %s: %w", p, err)
	}
	_, err = s.readResponse(st)
	return err
}

func (s *Session) Mkdir(ctx context.Context, p string, perm uint32) error {
	_, err := s.call(ctx, protocol.Request{Op: protocol.OpMkdir, Path: p, Perm: perm})
	return err
}

func (s *Session) Remove(ctx context.Context, p string) error {
	_, err := s.call(ctx, protocol.Request{Op: protocol.OpRemove, Path: p})
	return err
}

func (s *Session) Rename(ctx context.Context, from, to string) error {
	_, err := s.call(ctx, protocol.Request{Op: protocol.OpRename, Path: from, NewPath: to})
	return err
}

func (s *Session) SetAttr(ctx context.Context, p string, follow bool, a protocol.Attr) error {
	_, err := s.call(ctx, protocol.Request{Op: protocol.OpSetAttr, Path: p, NoFollow: !follow, Attr: &a})
	return err
}

func (s *Session) Symlink(ctx context.Context, target, link string) error {
	_, err := s.call(ctx, protocol.Request{Op: protocol.OpSymlink, Path: link, Target: target})
	return err
}

func (s *Session) Link(ctx context.Context, from, to string, follow bool) error {
	_, err := s.call(ctx, protocol.Request{Op: protocol.OpLink, Path: from, NewPath: to, NoFollow: !follow})
	return err
}

// LocalDirs returns the directories that must stay local for a command:
// the working directory, the home directory and the command's directory.
func LocalDirs(command string) []string {
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, home)
	}
	dirs = append(dirs, os.TempDir())
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if command != "" {
		if strings.Contains(command, "/") {
			if abs, err := filepath.Abs(command); err == nil {
				dirs = append(dirs, filepath.Dir(abs))
			}
		}
	}
	return dirs
}
