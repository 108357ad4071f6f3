// Command podapp is the server of the incoming-traffic integration tests. The
// harness runs one instance inside the fake pod ("who: pod") and the tests
// run others locally under `tether exec` ("who: local"); every answer says
// which one answered, so a test can tell mirrored, stolen and passed-through
// traffic apart.
//
//	podapp [--who NAME] [--host HOST] [--http PORTS] [--echo PORTS]
//
// PORTS is a comma-separated list of ports and ranges ("18080,18090-18099").
// On each --http port it serves, on one listener, HTTP/1.1 and h2c (prior
// knowledge and HTTP/2 only, through net/http's Protocols), a WebSocket echo
// on paths starting with /ws, and the gRPC health service
// (grpc.health.v1.Health/Check). On each --echo port it runs a line echo
// over raw TCP.
//
// Output, one line each, on stdout:
//
//	listening http PORT addr=ADDR      after each listen (ADDR: getsockname)
//	listening echo PORT addr=ADDR
//	podapp ready who=NAME pid=PID      once every listener is up
//	request: who=NAME kind=http|ws|grpc|tcp proto=P method=M path=P user=U remote=ADDR
//	podapp exiting                     on SIGTERM / SIGINT (then exit 0)
//
// A failed listen prints "podapp: listen ...: ERROR" on stderr and exits 3.
//
// Answers: an HTTP response has an "X-Who" header and a body of "key: value"
// lines (who, kind, proto, method, path, user, remote: the client address
// the server saw); user is the x-tether-user request header. A WebSocket
// first sends such a block as a text message, then echoes every message. A
// gRPC Check call returns SERVING and the same keys as response header
// metadata. The TCP echo answers each line L with "who=NAME echo=L".
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// UserHeader is the request header echoed as "user".
const UserHeader = "X-Tether-User"

var (
	who   = "pod"
	outMu sync.Mutex
)

// say prints one line on stdout (whole lines only, from any goroutine).
func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

// answer is what a server tells a client about the request it got.
type answer struct {
	kind, proto, method, path, user, remote string
}

func (a answer) pairs() [][2]string {
	return [][2]string{
		{"who", who}, {"kind", a.kind}, {"proto", a.proto}, {"method", a.method},
		{"path", a.path}, {"user", a.user}, {"remote", a.remote},
	}
}

func (a answer) body() string {
	var b strings.Builder
	for _, p := range a.pairs() {
		fmt.Fprintf(&b, "%s: %s\n", p[0], p[1])
	}
	return b.String()
}

func (a answer) log() {
	var b strings.Builder
	b.WriteString("request:")
	for _, p := range a.pairs() {
		fmt.Fprintf(&b, " %s=%s", p[0], strings.ReplaceAll(p[1], " ", "%20"))
	}
	say("%s", b.String())
}

func main() {
	var httpPorts, echoPorts portList
	flag.StringVar(&who, "who", who, "name reported in every answer")
	host := flag.String("host", "", "address to listen on (default: all, dual-stack)")
	flag.Var(&httpPorts, "http", "ports for HTTP/1.1 + h2c + WebSocket + gRPC")
	flag.Var(&echoPorts, "echo", "ports for the raw TCP line echo")
	flag.Parse()
	if len(httpPorts) == 0 && len(echoPorts) == 0 {
		fmt.Fprintln(os.Stderr, "podapp: give at least one --http or --echo port")
		os.Exit(2)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	handler := newHandler()
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	for _, p := range httpPorts {
		ln := listen(*host, p)
		say("listening http %d addr=%s", p, ln.Addr())
		srv := &http.Server{Handler: handler, Protocols: &protos, ReadHeaderTimeout: 30 * time.Second}
		go srv.Serve(ln)
	}
	for _, p := range echoPorts {
		ln := listen(*host, p)
		say("listening echo %d addr=%s", p, ln.Addr())
		go serveEcho(ln)
	}
	say("podapp ready who=%s pid=%d", who, os.Getpid())
	<-sigs
	say("podapp exiting")
	os.Exit(0)
}

func listen(host string, port int) net.Listener {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "podapp: %v\n", err)
		os.Exit(3)
	}
	return ln
}

func newHandler() http.Handler {
	gs := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(gs, healthServer{})
	ws := websocket.Server{Handler: serveWS} // no Origin check
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/ws") {
			ws.ServeHTTP(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
			time.Sleep(d) // ?delay=300ms: a slow answer
		}
		a := answer{kind: "http", proto: r.Proto, method: r.Method, path: r.URL.Path, user: r.Header.Get(UserHeader), remote: r.RemoteAddr}
		a.log()
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Who", who)
		io.WriteString(w, a.body())
	})
}

func serveWS(c *websocket.Conn) {
	defer c.Close()
	r := c.Request()
	a := answer{kind: "ws", proto: r.Proto, method: r.Method, path: r.URL.Path, user: r.Header.Get(UserHeader), remote: r.RemoteAddr}
	a.log()
	if err := websocket.Message.Send(c, a.body()); err != nil {
		return
	}
	for {
		c.SetDeadline(time.Now().Add(time.Minute))
		var msg string
		if err := websocket.Message.Receive(c, &msg); err != nil {
			return
		}
		if err := websocket.Message.Send(c, msg); err != nil {
			return
		}
	}
}

type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
}

func (healthServer) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	a := answer{kind: "grpc", proto: "HTTP/2.0", method: "POST"}
	a.path, _ = grpc.Method(ctx)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(strings.ToLower(UserHeader)); len(v) > 0 {
			a.user = v[0]
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		a.remote = p.Addr.String()
	}
	a.log()
	md := metadata.MD{}
	for _, p := range a.pairs() {
		md.Set(p[0], p[1])
	}
	if err := grpc.SetHeader(ctx, md); err != nil {
		return nil, status.Errorf(codes.Internal, "setting header: %v", err)
	}
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			answer{kind: "tcp", proto: "tcp", remote: c.RemoteAddr().String()}.log()
			c.SetDeadline(time.Now().Add(time.Minute))
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintf(c, "who=%s echo=%s\n", who, sc.Text()); err != nil {
					return
				}
			}
		}()
	}
}

// portList is a flag value: "18080,18090-18099", repeatable.
type portList []int

func (l *portList) String() string { return fmt.Sprint(*l) }

func (l *portList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 1 || a > 65535 {
			return fmt.Errorf("bad port %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 65535 {
				return fmt.Errorf("bad port range %q", part)
			}
		}
		for p := a; p <= b; p++ {
			*l = append(*l, p)
		}
	}
	return nil
}
