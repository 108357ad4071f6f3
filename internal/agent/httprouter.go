package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/internal/httpfilter"
)

// httpRouter serves connections on ports with filtered stealers: an
// HTTP/1.1 + h2c reverse proxy that sends each request (HTTP/1.1 request on
// a keep-alive connection, HTTP/2 stream, gRPC call, WebSocket upgrade) to
// the first session whose filter matches it, else to the real app.
type httpRouter struct {
	in  *incoming
	srv *http.Server
	ln  *chanListener

	mu    sync.Mutex
	conns map[*routedConn]struct{} // open client connections
	// draining: the agent is ending; HTTP/1 answers close their
	// connection (see incoming.drain).
	draining atomic.Bool
}

type connKey struct{}

// routedConn is a client connection whose first bytes were peeked.
type routedConn struct {
	net.Conn
	r           io.Reader // reads start with the peeked bytes
	raw         *net.TCPConn
	client, dst netip.AddrPort
	state       *connState
	// idleSince is when the connection went idle after an answer (Unix
	// nanoseconds), 0 while a request is served.
	idleSince atomic.Int64
	release   func() // called once closed (incoming.hold)
}

// Close closes the connection, also when a WebSocket upgrade hijacked it.
func (c *routedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

func (c *routedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *routedConn) CloseWrite() error          { return c.raw.CloseWrite() }

func newHTTPRouter(in *incoming) *httpRouter {
	r := &httpRouter{in: in, ln: newChanListener(), conns: map[*routedConn]struct{}{}}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	r.srv = &http.Server{
		Handler:   r,
		Protocols: &protocols,
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*routedConn); ok {
				rc.state = &connState{router: r, raw: rc.raw, client: rc.client, dst: rc.dst}
				return context.WithValue(ctx, connKey{}, rc.state)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			rc, ok := c.(*routedConn)
			if !ok {
				return
			}
			r.mu.Lock()
			switch st {
			case http.StateNew:
				r.conns[rc] = struct{}{}
			case http.StateIdle:
				rc.idleSince.Store(time.Now().UnixNano())
			case http.StateActive:
				rc.idleSince.Store(0)
			case http.StateClosed, http.StateHijacked:
				delete(r.conns, rc)
			}
			r.mu.Unlock()
			// The client is gone: so are its backend connections.
			if rc.state != nil && st == http.StateClosed {
				rc.state.close()
			}
		},
		IdleTimeout: 5 * time.Minute,
	}
	go r.srv.Serve(r.ln)
	return r
}

func (r *httpRouter) serve(c *routedConn) { r.ln.push(c) }

func (r *httpRouter) close() { r.srv.Close() }

// closeQuiet closes the client connections quiet enough after an answer
// (quietEnough) and returns how many are left.
func (r *httpRouter) closeQuiet() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	left := 0
	for rc := range r.conns {
		if since := rc.idleSince.Load(); since != 0 && quietEnough(time.Since(time.Unix(0, since)), true) {
			rc.Close()
			delete(r.conns, rc)
			continue
		}
		left++
	}
	return left
}

// shutdown ends the server gracefully (HTTP/2 clients get a GOAWAY),
// cutting what is left after timeout.
func (r *httpRouter) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, 0))
	defer cancel()
	if r.srv.Shutdown(ctx) != nil {
		r.srv.Close()
	}
}

// reset resets every client connection (the app is gone) and returns how
// many there were.
func (r *httpRouter) reset() int {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for rc := range r.conns {
		resetConn(rc.raw)
	}
	return len(r.conns)
}

// connState is one client connection's routes: a transport per target
// (each session, the real app), so every client connection maps to its own
// connection on each side and keep-alive works end to end.
type connState struct {
	router      *httpRouter
	raw         *net.TCPConn
	client, dst netip.AddrPort

	mu         sync.Mutex
	transports map[transportKey]*http.Transport
}

type transportKey struct {
	sub uint64 // 0: the real app
	h2  bool
}

func (cs *connState) transport(sub *subscription, h2 bool) *http.Transport {
	key := transportKey{h2: h2}
	if sub != nil {
		key.sub = sub.id
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if t, ok := cs.transports[key]; ok {
		return t
	}
	in := cs.router.in
	var protocols http.Protocols
	if h2 {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	t := &http.Transport{
		Protocols:          &protocols,
		DisableCompression: true,
		IdleConnTimeout:    90 * time.Second,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if sub != nil {
				return in.deliver(sub, cs.client, cs.dst, false)
			}
			return in.dialApp(ctx, cs.client, cs.dst)
		},
	}
	if cs.transports == nil {
		cs.transports = map[transportKey]*http.Transport{}
	}
	cs.transports[key] = t
	return t
}

func (cs *connState) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, t := range cs.transports {
		t.CloseIdleConnections()
	}
}

func (r *httpRouter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.draining.Load() && req.ProtoMajor == 1 {
		// The agent is ending: this answer closes the connection, and the
		// client reconnects straight to the app (no request is cut).
		w.Header().Set("Connection", "close")
	}
	cs, ok := req.Context().Value(connKey{}).(*connState)
	if !ok {
		http.Error(w, "tether-agent: unrouted connection", http.StatusBadGateway)
		return
	}
	var target *subscription
	fr := httpfilter.FromHTTP(req)
	for _, s := range r.in.snapshot(cs.dst.Port()) {
		if !s.filteredSteal() || !s.filter.Match(fr) {
			continue
		}
		if target == nil {
			target = s
			continue
		}
		r.in.warnOverlap(target, s, req)
	}
	h2 := req.ProtoMajor == 2
	if target != nil {
		r.proxy(cs, target, h2, func(w http.ResponseWriter, out *http.Request, err error) {
			r.in.log.Warn("stolen request could not reach its session", "session", target.sess.id, "path", req.URL.Path, "err", err)
			if req.Body == nil || req.Body == http.NoBody {
				// Nothing consumed: the real app answers instead.
				r.proxy(cs, nil, h2, nil).ServeHTTP(w, req)
				return
			}
			http.Error(w, "tether-agent: the session that took this request is gone", http.StatusBadGateway)
		}).ServeHTTP(w, req)
		return
	}
	r.proxy(cs, nil, h2, nil).ServeHTTP(w, req)
}

func (r *httpRouter) proxy(cs *connState, target *subscription, h2 bool, onErr func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	if onErr == nil {
		onErr = func(w http.ResponseWriter, _ *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				r.in.log.Warn("passing a request through to the app failed", "dst", cs.dst.String(), "err", err)
			}
			switch {
			case h2:
			case appGone(err):
				// The app is gone (its container is stopping): reset the
				// client's connection, as the kernel would without tether,
				// rather than answer for the app.
				resetConn(cs.raw)
				panic(http.ErrAbortHandler)
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				// The app closed the connection without an answer (it is
				// exiting): so does the agent, and the client sees the
				// same end as without tether, not a 502 from us.
				cs.raw.Close()
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(http.StatusBadGateway)
		}
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = cs.dst.String()
			pr.Out.Host = pr.In.Host
		},
		Transport: cs.transport(target, h2),
		// 0: responses of unknown length (gRPC, server-sent events) are
		// still flushed at once; others are written in one go, not a
		// flush (and a timer) per write.
		FlushInterval: 0,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler:  onErr,
		// Without a pool each answer's copy allocates its own 32 KiB
		// buffer: at tens of thousands of requests a second, that is the
		// garbage collector's work on the deployed app's CPU.
		BufferPool: proxyBuffers,
	}
}

// proxyBuffers are the reverse proxies' copy buffers.
var proxyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// warnOverlap tells the later session, once per pair of subscriptions,
// that a request matched its filter but went to an earlier session.
func (in *incoming) warnOverlap(earlier, later *subscription, req *http.Request) {
	in.mu.Lock()
	key := [2]uint64{earlier.id, later.id}
	seen := in.warned[key]
	in.warned[key] = true
	in.mu.Unlock()
	if seen || earlier.sess == later.sess {
		return
	}
	go in.notify(later.sess, fmt.Sprintf("a %s %s request on port %d matched your filter %v and the filter %v of session %s, which subscribed earlier: it went to that session (overlapping filters)",
		req.Method, req.URL.Path, later.port, later.filter, earlier.filter, earlier.sess.id))
}

// chanListener is a net.Listener fed by push.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
