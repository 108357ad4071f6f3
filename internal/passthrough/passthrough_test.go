package passthrough

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/httpframe"
)

// rig is an app (net/http), a "session" server that handed-off
// connections go to, and a listener whose connections go through Conn.
type rig struct {
	addr     string // the passthrough's
	appConns atomic.Int32
	appSaw   atomic.Int32 // requests the app served
}

func newRig(t *testing.T, opts ...func(*Conn)) *rig {
	t.Helper()
	r := &rig{}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, req *http.Request) {
		r.appSaw.Add(1)
		b, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "app %d %x", len(b), sha256.Sum256(b))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, req *http.Request) {
		r.appSaw.Add(1)
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, req *http.Request) {
		r.appSaw.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/untilclose", func(w http.ResponseWriter, req *http.Request) {
		r.appSaw.Add(1)
		c, brw, _ := w.(http.Hijacker).Hijack()
		brw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
		brw.Flush()
		c.Close()
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, req *http.Request) {
		r.appSaw.Add(1)
		c, brw, _ := w.(http.Hijacker).Hijack()
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.appSaw.Add(1)
		fmt.Fprintf(w, "app %s %s", req.Method, req.URL.Path)
	})
	app := listen(t)
	appSrv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.appConns.Add(1)
		}
	}}
	go appSrv.Serve(app)
	t.Cleanup(func() { appSrv.Close() })
	session := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		fmt.Fprintf(w, "session %s", req.URL.Path)
	})}
	handed := newChanListener()
	go session.Serve(handed)
	t.Cleanup(func() { session.Close() })
	front := listen(t)
	r.addr = front.Addr().String()
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			pc := &Conn{Client: c,
				DialApp: func() (net.Conn, error) { return net.Dial("tcp", app.Addr().String()) },
				Taken: func(r httpfilter.Request) bool {
					return r.Header.Get("X-Tether-User") == "me" || r.Path == "/taken path"
				},
				Handoff: func(c net.Conn) { handed.ch <- c },
			}
			for _, o := range opts {
				o(pc)
			}
			go pc.Serve()
		}
	}()
	return r
}

// dial connects a client to the rig, with a deadline; closed at the end
// of the test.
func (r *rig) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
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
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

func get(t *testing.T, c *http.Client, method, url, user string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	if user != "" {
		req.Header.Set("X-Tether-User", user)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// TestKeepAliveMix: one client connection carries GETs, bodies of every
// framing, HEAD, 204, chunked answers and 100-continue to the app over
// one app connection, then is handed off at its first taken request.
func TestKeepAliveMix(t *testing.T) {
	r := newRig(t)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, ExpectContinueTimeout: 5 * time.Second}}
	base := "http://" + r.addr
	for i := range 20 {
		if code, body := get(t, c, "GET", fmt.Sprintf("%s/p%d", base, i), "", nil); code != 200 || body != fmt.Sprintf("app GET /p%d", i) {
			t.Fatalf("GET %d: %d %q", i, code, body)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	want := fmt.Sprintf("app %d %x", len(big), sha256.Sum256(big))
	if _, body := get(t, c, "POST", base+"/echo", "", bytes.NewReader(big)); body != want {
		t.Errorf("1 MiB with Content-Length: %q", body)
	}
	// An io.Reader of unknown length: chunked.
	if _, body := get(t, c, "POST", base+"/echo", "", io.MultiReader(bytes.NewReader(big[:1000]), bytes.NewReader(big[1000:]))); body != want {
		t.Errorf("1 MiB chunked: %q", body)
	}
	req, _ := http.NewRequest("PUT", base+"/echo", bytes.NewReader(big[:10]))
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("100-continue: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "app 10 ") {
		t.Errorf("100-continue: %q", b)
	}
	if code, body := get(t, c, "HEAD", base+"/x", "", nil); code != 200 || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
	if code, _ := get(t, c, "GET", base+"/nocontent", "", nil); code != 204 {
		t.Errorf("204: %d", code)
	}
	if _, body := get(t, c, "GET", base+"/chunked", "", nil); body != "part0;part1;part2;" {
		t.Errorf("a chunked answer: %q", body)
	}
	if got := r.appConns.Load(); got != 1 {
		t.Errorf("the app saw %d connections for one client connection, want 1", got)
	}
	saw := r.appSaw.Load()
	// Taken: this request and the connection's next go to the session.
	if _, body := get(t, c, "GET", base+"/mine", "me", nil); body != "session /mine" {
		t.Errorf("a taken request: %q", body)
	}
	if _, body := get(t, c, "GET", base+"/after", "", nil); body != "session /after" {
		t.Errorf("the handed-off connection's next request: %q", body)
	}
	if r.appSaw.Load() != saw {
		t.Errorf("the app saw a taken request")
	}
	if _, body := get(t, c, "GET", base+"/untilclose", "", nil); body != "session /untilclose" {
		t.Errorf("%q", body)
	}
}

func TestUntilCloseAndPipelining(t *testing.T) {
	r := newRig(t)
	c := &http.Client{Timeout: 10 * time.Second}
	if _, body := get(t, c, "GET", "http://"+r.addr+"/untilclose", "", nil); body != "until the end" {
		t.Errorf("an answer until close: %q", body)
	}
	conn := r.dial(t)
	io.WriteString(conn, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	for _, want := range []string{"app GET /a", "app 3 ", "app GET /c"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(b), want) {
			t.Errorf("pipelined: %q, want %q", b, want)
		}
	}
}

func TestUpgrade(t *testing.T) {
	r := newRig(t)
	conn := r.dial(t)
	// The client's first bytes of the new protocol come with the request.
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("through the tunnel: %q %v", line, err)
	}
}

// TestSmuggling: what cannot be framed safely never reaches the app.
func TestSmuggling(t *testing.T) {
	r := newRig(t)
	for _, raw := range []string{
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
		"GET / HTTP/1.1\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		conn := r.dial(t)
		io.WriteString(conn, raw)
		b, _ := io.ReadAll(conn)
		conn.Close()
		if !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
			t.Errorf("%q: answered %q, want 400", raw, b)
		}
	}
	if n := r.appSaw.Load(); n != 0 {
		t.Errorf("the app served %d of them", n)
	}
}

// TestEncodedPath: a filter sees the path decoded, as the filtering
// router (net/http) shows it: no encoding gets a request past it.
func TestEncodedPath(t *testing.T) {
	r := newRig(t)
	c := &http.Client{Timeout: 10 * time.Second}
	if _, body := get(t, c, "GET", "http://"+r.addr+"/taken%20p%61th?q=1", "", nil); body != "session /taken path" {
		t.Errorf("an encoded path a filter takes: %q", body)
	}
	if n := r.appSaw.Load(); n != 0 {
		t.Errorf("the app served it")
	}
}

// TestPrefixAndClosing: bytes read before Serve come first; while
// Closing says so, an answer says Connection: close and ends the
// connection after it.
func TestPrefixAndClosing(t *testing.T) {
	var closing atomic.Bool
	r := newRig(t, func(c *Conn) {
		c.Prefix = []byte("GET /pre")
		c.Closing = closing.Load
	})
	conn := r.dial(t)
	br := bufio.NewReader(conn)
	io.WriteString(conn, "fix HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "app GET /prefix" || resp.Close {
		t.Errorf("first answer: %q (close %v), want the prefixed request's, kept alive", b, resp.Close)
	}
	closing.Store(true)
	io.WriteString(conn, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "app GET /second" || !resp.Close {
		t.Errorf("answer while closing: %q (close %v), want Connection: close", b, resp.Close)
	}
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the closing answer: read %d, %v; want EOF", n, err)
	}
}

// TestResetWhenAppGone: with Reset set, an app that refuses the
// connection makes the client's connection reset, not answered.
func TestResetWhenAppGone(t *testing.T) {
	gone := listen(t)
	addr := gone.Addr().String()
	gone.Close() // nobody listens there now: refused
	var resets atomic.Int32
	r := newRig(t, func(c *Conn) {
		c.DialApp = func() (net.Conn, error) { return net.Dial("tcp", addr) }
		client := c.Client
		c.Reset = func() {
			resets.Add(1)
			client.(*net.TCPConn).SetLinger(0)
			client.Close()
		}
	})
	conn := r.dial(t)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, err := io.ReadAll(conn)
	if len(b) != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read %q, %v; want a reset", b, err)
	}
	if resets.Load() != 1 {
		t.Errorf("Reset called %d times", resets.Load())
	}
}

// recCopy records the copies of requests.
type recCopy struct {
	mu   sync.Mutex
	reqs []string // each complete copy
	cur  bytes.Buffer
}

func (r *recCopy) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.Write(b)
}

func (r *recCopy) End(complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if complete {
		r.reqs = append(r.reqs, r.cur.String())
	}
	r.cur.Reset()
}

// TestCopy: each request that goes to the app is copied whole, exactly as
// sent, pipelined and with a body of each framing; one Copy skips.
func TestCopy(t *testing.T) {
	rec := &recCopy{}
	r := newRig(t, func(c *Conn) {
		c.Copy = func(req *httpframe.Request) Copy {
			if req.Path == "/skip" {
				return nil
			}
			return rec
		}
	})
	conn := r.dial(t)
	big := strings.Repeat("x", 200<<10) // past the buffer, and spliceMin
	reqs := []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /skip HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
	}
	go io.WriteString(conn, strings.Join(reqs, ""))
	br := bufio.NewReader(conn)
	for range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
	}
	want := append([]string{reqs[0]}, reqs[2:]...)
	// A copy ends once its exchange returns, which can be just after the
	// client has read the answer (seen: 3 of 4 in a make test run).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		rec.mu.Lock()
		n := len(rec.reqs)
		rec.mu.Unlock()
		if n >= len(want) {
			break
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) != len(want) {
		t.Fatalf("%d copies, want %d", len(rec.reqs), len(want))
	}
	for i := range want {
		if rec.reqs[i] != want[i] {
			t.Errorf("copy %d: %.80q..., want %.80q...", i, rec.reqs[i], want[i])
		}
	}
}

// countingConn counts the writes to a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestOneWritePerAnswer: a small answer the app wrote at once reaches the
// client in one write (one segment, one wakeup), not its head and body
// apart.
func TestOneWritePerAnswer(t *testing.T) {
	var writes atomic.Int32
	r := newRig(t, func(c *Conn) { c.Client = countingConn{Conn: c.Client, writes: &writes} })
	conn := r.dial(t)
	br := bufio.NewReader(conn)
	const n = 20
	for i := range n {
		fmt.Fprintf(conn, "GET /a%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("app GET /a%d", i); string(b) != want {
			t.Fatalf("answer %q, want %q", b, want)
		}
	}
	if got := writes.Load(); got != n {
		t.Errorf("%d writes to the client for %d answers, want one each", got, n)
	}
}
