package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Addresses of the client network namespace.
const (
	ClientIP      = "198.19.1.2"
	ClientGateway = "198.19.1.1" // the services namespace's end of its veth
)

// UserHeader is the request header the pod app echoes as "user"; the
// tests' HTTP filters match on it.
const UserHeader = "X-Tether-User"

// RequestTimeout bounds each request of the client helpers.
const RequestTimeout = 10 * time.Second

// Client is a network namespace standing for a client of the pod in the
// cluster (another pod, an ingress): ClientIP, with a default route through
// the services namespace (which forwards) to the pod's IP. Its sockets are
// created inside the namespace (internal/netns.Do) and then used from any
// goroutine.
type Client struct {
	NetNS  string // name, e.g. tth-cli-1a2b
	NSPath string // /run/netns/NAME
	IP     string // ClientIP
}

func newClient(id string, svc *Services) (*Client, error) {
	c := &Client{NetNS: Prefix + "cli-" + id, IP: ClientIP}
	ip := ipPath()
	if err := run(ip, "netns", "add", c.NetNS); err != nil {
		return nil, err
	}
	addGlobalCleanup(func() { exec.Command(ip, "netns", "del", c.NetNS).Run() })
	c.NSPath = filepath.Join("/run/netns", c.NetNS)
	if _, err := os.Stat(c.NSPath); err != nil {
		c.NSPath = filepath.Join("/var/run/netns", c.NetNS)
	}
	veth := Prefix + "c-" + id // the services end
	steps := [][]string{
		{"link", "add", "eth0", "netns", c.NetNS, "type", "veth", "peer", "name", veth, "netns", svc.NetNS},
		{"-n", svc.NetNS, "addr", "add", ClientGateway + "/24", "dev", veth},
		{"-n", svc.NetNS, "link", "set", veth, "up"},
		{"-n", c.NetNS, "link", "set", "lo", "up"},
		{"-n", c.NetNS, "addr", "add", ClientIP + "/24", "dev", "eth0"},
		{"-n", c.NetNS, "link", "set", "eth0", "up"},
		{"-n", c.NetNS, "route", "add", "default", "via", ClientGateway},
	}
	for _, s := range steps {
		if err := run(ip, s...); err != nil {
			return nil, err
		}
	}
	// The services namespace routes between the client and the pod.
	if err := svc.in(func() error { return writeSysctl("net/ipv4/ip_forward", "1") }); err != nil {
		return nil, fmt.Errorf("enabling forwarding in %s: %w", svc.NetNS, err)
	}
	return c, nil
}

// writeSysctl writes /proc/sys/KEY and reads it back. Network sysctls are
// those of the calling thread's network namespace.
func writeSysctl(key, value string) error {
	path := "/proc/sys/" + key
	if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
		return err
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(got)) != value {
		return fmt.Errorf("%s is %q after writing %q", path, strings.TrimSpace(string(got)), value)
	}
	return nil
}

// Dial opens a TCP connection from the client namespace to addr.
func (c *Client) Dial(addr string) (net.Conn, error) {
	return DialIn(c.NSPath, "tcp4", addr, 5*time.Second)
}

// PodAddr returns "PodIP:port".
func PodAddr(port int) string { return net.JoinHostPort(PodIP, strconv.Itoa(port)) }

// Answer is what a pod app (podapp, in the pod or local) reported about a
// request it answered.
type Answer struct {
	Who    string // "pod" or "local" (the app's --who)
	Kind   string // http, ws, grpc, tcp
	Proto  string // the protocol the app saw (HTTP/1.1, HTTP/2.0)
	Method string
	Path   string
	User   string // the X-Tether-User header it saw
	Remote string // the client address it saw (accept / getpeername)
	Status int    // HTTP status (0 for WebSocket, gRPC)
}

// RemoteIP is the host part of Remote.
func (a Answer) RemoteIP() string {
	h, _, err := net.SplitHostPort(a.Remote)
	if err != nil {
		return a.Remote
	}
	return h
}

func (a Answer) String() string {
	return fmt.Sprintf("who=%s kind=%s proto=%s %s %s user=%q remote=%s status=%d", a.Who, a.Kind, a.Proto, a.Method, a.Path, a.User, a.Remote, a.Status)
}

// ParseAnswer reads the "key: value" lines of a podapp answer.
func ParseAnswer(body string) (Answer, error) {
	var a Answer
	for _, l := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		a.set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if a.Who == "" {
		return a, fmt.Errorf("not a podapp answer: %q", body)
	}
	return a, nil
}

func (a *Answer) set(k, v string) {
	switch k {
	case "who":
		a.Who = v
	case "kind":
		a.Kind = v
	case "proto":
		a.Proto = v
	case "method":
		a.Method = v
	case "path":
		a.Path = v
	case "user":
		a.User = v
	case "remote":
		a.Remote = v
	}
}

// Header returns an http.Header with X-Tether-User: user (none if user is
// ""), plus extra "Name: value" pairs.
func Header(user string, extra ...string) http.Header {
	h := http.Header{}
	if user != "" {
		h.Set(UserHeader, user)
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, ":")
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h
}

// HTTP1Conn is one HTTP/1.1 keep-alive connection from the client
// namespace to the pod: every Do goes over the same TCP connection.
type HTTP1Conn struct {
	conn   net.Conn
	br     *bufio.Reader
	host   string
	closed bool
}

// HTTP1 opens one keep-alive HTTP/1.1 connection to the pod's port.
func (c *Client) HTTP1(port int) (*HTTP1Conn, error) {
	conn, err := c.Dial(PodAddr(port))
	if err != nil {
		return nil, err
	}
	return &HTTP1Conn{conn: conn, br: bufio.NewReader(conn), host: PodAddr(port)}, nil
}

// LocalAddr is the client side of the connection.
func (h *HTTP1Conn) LocalAddr() string { return h.conn.LocalAddr().String() }

// Close closes the connection.
func (h *HTTP1Conn) Close() error { return h.conn.Close() }

// ClosedByPeer reports whether the server has closed or reset the
// connection since its last answer, as an HTTP client's connection pool
// notices before it reuses a connection.
func (h *HTTP1Conn) ClosedByPeer() bool {
	if h.closed {
		return true
	}
	h.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer h.conn.SetReadDeadline(time.Time{})
	_, err := h.br.Peek(1)
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Do sends one request on the connection and reads the answer. It fails if
// the server closes the connection (no keep-alive).
func (h *HTTP1Conn) Do(method, path string, hdr http.Header) (Answer, error) {
	if h.closed {
		return Answer{}, errors.New("the server closed this keep-alive connection after an earlier answer")
	}
	req, err := http.NewRequest(method, "http://"+h.host+path, nil)
	if err != nil {
		return Answer{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	h.conn.SetDeadline(time.Now().Add(RequestTimeout))
	defer h.conn.SetDeadline(time.Time{})
	if err := req.Write(h.conn); err != nil {
		return Answer{}, fmt.Errorf("writing %s %s: %w", method, path, err)
	}
	resp, err := http.ReadResponse(h.br, req)
	if err != nil {
		return Answer{}, fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return Answer{}, fmt.Errorf("reading the body of %s %s: %w", method, path, err)
	}
	if resp.Close {
		h.closed = true
	}
	a, err := ParseAnswer(string(body))
	a.Status = resp.StatusCode
	if err != nil {
		return a, fmt.Errorf("%s %s: status %d: %w", method, path, resp.StatusCode, err)
	}
	return a, nil
}

// Get sends one HTTP/1.1 request on a fresh connection.
func (c *Client) Get(port int, path string, hdr http.Header) (Answer, error) {
	return c.Do(port, http.MethodGet, path, hdr)
}

// Do sends one HTTP/1.1 request on a fresh connection.
func (c *Client) Do(port int, method, path string, hdr http.Header) (Answer, error) {
	h, err := c.HTTP1(port)
	if err != nil {
		return Answer{}, err
	}
	defer h.Close()
	return h.Do(method, path, hdr)
}

// H2Conn is one h2c (HTTP/2 with prior knowledge) connection from the
// client namespace to the pod: every Do is a new stream on it.
type H2Conn struct {
	cc    *http.ClientConn
	host  string
	dials *atomic.Int32
}

// H2C opens one h2c connection (prior knowledge) to the pod's port.
func (c *Client) H2C(port int) (*H2Conn, error) {
	var dials atomic.Int32
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return c.Dial(addr)
		},
		Protocols: new(http.Protocols),
	}
	tr.Protocols.SetUnencryptedHTTP2(true)
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	cc, err := tr.NewClientConn(ctx, "http", PodAddr(port))
	if err != nil {
		return nil, err
	}
	return &H2Conn{cc: cc, host: PodAddr(port), dials: &dials}, nil
}

// Close closes the connection.
func (h *H2Conn) Close() error { return h.cc.Close() }

// Dials is the number of TCP connections made (1 unless something is off).
func (h *H2Conn) Dials() int { return int(h.dials.Load()) }

// Do sends one request as a new stream on the connection. Safe for
// concurrent use (concurrent calls are concurrent streams).
func (h *H2Conn) Do(method, path string, hdr http.Header) (Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+h.host+path, nil)
	if err != nil {
		return Answer{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.cc.RoundTrip(req)
	if err != nil {
		return Answer{}, fmt.Errorf("h2c %s %s: %w", method, path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return Answer{}, fmt.Errorf("h2c %s %s: reading the body: %w", method, path, err)
	}
	a, err := ParseAnswer(string(body))
	a.Status = resp.StatusCode
	if err != nil {
		return a, fmt.Errorf("h2c %s %s: status %d (%s): %w", method, path, resp.StatusCode, resp.Proto, err)
	}
	if resp.ProtoMajor != 2 {
		return a, fmt.Errorf("h2c %s %s: answered over %s", method, path, resp.Proto)
	}
	return a, nil
}

// WSConn is a WebSocket from the client namespace to the pod app's /ws
// endpoint. Hello is the first message (the answering app's report).
type WSConn struct {
	Hello Answer
	ws    *websocket.Conn
}

// WebSocket opens a WebSocket to ws://POD:port/path (path must start with
// /ws) with the extra request headers hdr and reads the greeting.
func (c *Client) WebSocket(port int, path string, hdr http.Header) (*WSConn, error) {
	cfg, err := websocket.NewConfig("ws://"+PodAddr(port)+path, "http://"+ClientIP+"/")
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		cfg.Header[k] = v
	}
	conn, err := c.Dial(PodAddr(port))
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(RequestTimeout))
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake %s: %w", path, err)
	}
	var hello string
	if err := websocket.Message.Receive(ws, &hello); err != nil {
		ws.Close()
		return nil, fmt.Errorf("websocket %s: reading the greeting: %w", path, err)
	}
	a, err := ParseAnswer(hello)
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("websocket %s: %w", path, err)
	}
	return &WSConn{Hello: a, ws: ws}, nil
}

// Echo sends msg and returns the message received back.
func (w *WSConn) Echo(msg string) (string, error) {
	w.ws.SetDeadline(time.Now().Add(RequestTimeout))
	if err := websocket.Message.Send(w.ws, msg); err != nil {
		return "", err
	}
	var got string
	err := websocket.Message.Receive(w.ws, &got)
	return got, err
}

// Close closes the WebSocket.
func (w *WSConn) Close() error { return w.ws.Close() }

// GRPCConn is one gRPC client connection (one HTTP/2 connection) from the
// client namespace to the pod.
type GRPCConn struct {
	cc    *grpc.ClientConn
	dials *atomic.Int32
}

// GRPC connects a gRPC client to the pod's port (plaintext, h2c).
func (c *Client) GRPC(port int) (*GRPCConn, error) {
	var dials atomic.Int32
	cc, err := grpc.NewClient("passthrough:///"+PodAddr(port),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return c.Dial(addr)
		}))
	if err != nil {
		return nil, err
	}
	return &GRPCConn{cc: cc, dials: &dials}, nil
}

// Dials is the number of TCP connections made so far.
func (g *GRPCConn) Dials() int { return int(g.dials.Load()) }

// Close closes the connection.
func (g *GRPCConn) Close() error { return g.cc.Close() }

// Check calls grpc.health.v1.Health/Check with x-tether-user: user
// metadata (none if ""), and returns the answer the server put in the
// response header metadata.
func (g *GRPCConn) Check(user string) (Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	if user != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(UserHeader), user)
	}
	var md metadata.MD
	resp, err := grpc_health_v1.NewHealthClient(g.cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Header(&md))
	if err != nil {
		return Answer{}, fmt.Errorf("grpc Check (user %q): %w", user, err)
	}
	var a Answer
	for _, k := range []string{"who", "kind", "proto", "method", "path", "user", "remote"} {
		if v := md.Get(k); len(v) > 0 {
			a.set(k, v[0])
		}
	}
	if a.Who == "" {
		return a, fmt.Errorf("grpc Check: no podapp header metadata in %v", md)
	}
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return a, fmt.Errorf("grpc Check: status %v", resp.GetStatus())
	}
	return a, nil
}

// EchoConn is a raw TCP connection to a podapp line echo (--echo port).
type EchoConn struct {
	conn net.Conn
	br   *bufio.Reader
}

// Echo opens a raw TCP connection to the pod's port.
func (c *Client) Echo(port int) (*EchoConn, error) {
	conn, err := c.Dial(PodAddr(port))
	if err != nil {
		return nil, err
	}
	return &EchoConn{conn: conn, br: bufio.NewReader(conn)}, nil
}

// Line sends line (no newline) and returns the answer line, e.g.
// "who=pod echo=LINE".
func (e *EchoConn) Line(line string) (string, error) {
	e.conn.SetDeadline(time.Now().Add(RequestTimeout))
	if _, err := io.WriteString(e.conn, line+"\n"); err != nil {
		return "", err
	}
	got, err := e.br.ReadString('\n')
	return strings.TrimRight(got, "\r\n"), err
}

// Close closes the connection.
func (e *EchoConn) Close() error { return e.conn.Close() }

// LoadOpts describes a steady request stream: Rate requests per second for
// Duration, each a GET of Path on a fresh HTTP/1.1 connection (so each
// request shows the routing in force when it was sent), with Timeout.
type LoadOpts struct {
	Port     int
	Rate     int           // default 100
	Duration time.Duration // default 5 s
	Timeout  time.Duration // per request, default 2 s
	Path     string        // default /load; "-N" is appended
	Header   http.Header
}

// LoadSample is the outcome of one request of a load run.
type LoadSample struct {
	Start, End time.Time
	Who        string // "" on error
	Err        error
}

// Load is a running load generator.
type Load struct {
	opts    LoadOpts
	done    chan struct{}
	mu      sync.Mutex
	samples []LoadSample
}

// StartLoad starts a load run in the background; Wait returns its samples.
func (c *Client) StartLoad(opts LoadOpts) *Load {
	if opts.Rate <= 0 {
		opts.Rate = 100
	}
	if opts.Duration <= 0 {
		opts.Duration = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Path == "" {
		opts.Path = "/load"
	}
	l := &Load{opts: opts, done: make(chan struct{})}
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.Dial(addr)
		},
	}
	client := &http.Client{Transport: tr, Timeout: opts.Timeout}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(opts.Rate))
		defer tick.Stop()
		end := time.Now().Add(opts.Duration)
		for i := 0; time.Now().Before(end); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.add(l.one(client, i))
			}()
			<-tick.C
		}
		wg.Wait()
		tr.CloseIdleConnections()
	}()
	return l
}

func (l *Load) one(client *http.Client, i int) LoadSample {
	s := LoadSample{Start: time.Now()}
	defer func() { s.End = time.Now() }()
	req, err := http.NewRequest(http.MethodGet, "http://"+PodAddr(l.opts.Port)+l.opts.Path+"-"+strconv.Itoa(i), nil)
	if err != nil {
		s.Err = err
		return s
	}
	for k, v := range l.opts.Header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		s.Err = err
		s.End = time.Now()
		return s
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.End = time.Now()
	if err != nil {
		s.Err = err
		return s
	}
	a, err := ParseAnswer(string(body))
	if err != nil {
		s.Err = err
		return s
	}
	s.Who = a.Who
	return s
}

func (l *Load) add(s LoadSample) {
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
}

// Wait waits for the run to end and returns its samples.
func (l *Load) Wait() []LoadSample {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LoadSample(nil), l.samples...)
}

// EndedBefore returns the samples that ended before t (requests that were
// not in flight at t).
func EndedBefore(samples []LoadSample, t time.Time) []LoadSample {
	var out []LoadSample
	for _, s := range samples {
		if s.End.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

// LoadStats summarises samples.
type LoadStats struct {
	Total, OK, Failed int
	ByWho             map[string]int
	Errors            []string // the first few distinct error messages
}

// Stats summarises the samples whose Start is in [from, to) (zero times:
// unbounded).
func Stats(samples []LoadSample, from, to time.Time) LoadStats {
	st := LoadStats{ByWho: map[string]int{}}
	seen := map[string]bool{}
	for _, s := range samples {
		if (!from.IsZero() && s.Start.Before(from)) || (!to.IsZero() && !s.Start.Before(to)) {
			continue
		}
		st.Total++
		if s.Err != nil {
			st.Failed++
			msg := s.Err.Error()
			if !seen[msg] && len(st.Errors) < 5 {
				seen[msg] = true
				st.Errors = append(st.Errors, msg)
			}
			continue
		}
		st.OK++
		st.ByWho[s.Who]++
	}
	return st
}

func (s LoadStats) String() string {
	return fmt.Sprintf("%d requests: %d ok %v, %d failed %q", s.Total, s.OK, s.ByWho, s.Failed, s.Errors)
}

// Client returns the client namespace, creating it on first use.
func (e *Env) Client(t testing.TB) *Client {
	t.Helper()
	e.clientOnce.Do(func() { e.client, e.clientErr = newClient(e.ID, e.Services) })
	if e.clientErr != nil {
		t.Fatalf("harness: client namespace: %v", e.clientErr)
	}
	return e.client
}
