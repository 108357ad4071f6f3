package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/netns"
	"golang.org/x/sys/unix"
)

// Services is the "cluster services" network namespace. It holds DNSIP
// (dnsmasq, UDP+TCP 53), WebIP:80 (HTTP), EchoIP:7 (TCP and UDP echo), all
// on its loopback, and the gateway end (PodGateway) of the pod's veth. It is
// reachable only from the pod's network namespace.
type Services struct {
	NetNS  string // name, e.g. tth-svc-1a2b
	NSPath string // /run/netns/NAME

	dnsmasq *proc
	dnsLog  *syncBuffer

	mu       sync.Mutex
	requests []Request
}

// Request is one HTTP request seen by the web service.
type Request struct {
	Path       string
	RemoteAddr string // the client address the server saw
	Host       string
}

// WebBody is what the web service answers for path p to a client at addr.
func WebBody(p, addr string) string {
	return fmt.Sprintf("hello from web.demo (%s)\npath=%s\nclient=%s\n", WebIP, p, addr)
}

// WebGreeting is the first line of every web service answer.
const WebGreeting = "hello from web.demo (" + WebIP + ")"

func newServicesNS(id string) (*Services, error) {
	s := &Services{NetNS: Prefix + "svc-" + id, dnsLog: newSyncBuffer()}
	ip := ipPath()
	if err := run(ip, "netns", "add", s.NetNS); err != nil {
		return nil, err
	}
	addGlobalCleanup(func() { exec.Command(ip, "netns", "del", s.NetNS).Run() })
	s.NSPath = filepath.Join("/run/netns", s.NetNS)
	if _, err := os.Stat(s.NSPath); err != nil {
		s.NSPath = filepath.Join("/var/run/netns", s.NetNS)
	}
	cmds := [][]string{
		{"-n", s.NetNS, "link", "set", "lo", "up"},
	}
	for _, a := range []string{DNSIP, WebIP, EchoIP, RedisIP} {
		cmds = append(cmds, []string{"-n", s.NetNS, "addr", "add", a + "/32", "dev", "lo"})
	}
	for _, c := range cmds {
		if err := run(ip, c...); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// in runs fn inside the services network namespace.
func (s *Services) in(fn func() error) error { return netns.Do(s.NSPath, unix.CLONE_NEWNET, fn) }

// Requests returns the HTTP requests the web service has seen so far.
func (s *Services) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// DNSLog returns dnsmasq's log (it logs every query).
func (s *Services) DNSLog() string { return s.dnsLog.String() }

// DNSMasqPID returns the PID of the DNS server.
func (s *Services) DNSMasqPID() int { return s.dnsmasq.pid() }

func (s *Services) startServers() error {
	var (
		webLn  net.Listener
		echoLn net.Listener
		udpPC  net.PacketConn
	)
	err := s.in(func() error {
		var err error
		if webLn, err = net.Listen("tcp4", WebIP+":80"); err != nil {
			return err
		}
		if echoLn, err = net.Listen("tcp4", EchoIP+":7"); err != nil {
			return err
		}
		udpPC, err = net.ListenPacket("udp4", EchoIP+":7")
		return err
	})
	if err != nil {
		for _, c := range []io.Closer{webLn, echoLn, udpPC} {
			if c != nil {
				c.Close()
			}
		}
		return fmt.Errorf("listening in %s: %w", s.NetNS, err)
	}

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.requests = append(s.requests, Request{Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Host: r.Host})
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Served-By", "web.demo")
			io.WriteString(w, WebBody(r.URL.Path, r.RemoteAddr))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(webLn)
	addGlobalCleanup(func() { srv.Close() })

	go serveTCPEcho(echoLn)
	addGlobalCleanup(func() { echoLn.Close() })

	go serveUDPEcho(udpPC)
	addGlobalCleanup(func() { udpPC.Close() })

	return s.startDNS()
}

func serveTCPEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.Copy(c, c)
		}()
	}
}

func serveUDPEcho(pc net.PacketConn) {
	buf := make([]byte, 64*1024)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pc.WriteTo(buf[:n], addr)
	}
}

// startDNS runs dnsmasq inside the namespace: authoritative for
// cluster.local (unknown names there get NXDOMAIN), no upstream servers.
func (s *Services) startDNS() error {
	dm, err := lookTool("dnsmasq")
	if err != nil {
		return fmt.Errorf("dnsmasq not found (install dnsmasq-base: sudo hack/install-deps.sh)")
	}
	nsenter, err := lookTool("nsenter")
	if err != nil {
		return err
	}
	args := []string{
		"--net=" + s.NSPath, "--", dm,
		"--keep-in-foreground",
		"--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--no-poll",
		"--user=root", "--group=root", // no privilege drop: keeps the parent-death signal
		"--pid-file=" + filepath.Join(runDir, "dnsmasq.pid"),
		"--listen-address=" + DNSIP, "--bind-interfaces", "--port=53",
		"--log-facility=-", "--log-queries",
		"--local=/#/", // no upstream: unknown names are NXDOMAIN
		"--host-record=" + WebName + "," + WebIP,
		"--host-record=" + EchoName + "," + EchoIP,
		"--host-record=" + RedisName + "," + RedisIP,
	}
	cmd := exec.Command(nsenter, args...)
	cmd.Stdout = s.dnsLog
	cmd.Stderr = s.dnsLog
	p, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("starting dnsmasq: %w", err)
	}
	s.dnsmasq = p
	addGlobalCleanup(func() { p.stop(syscall.SIGTERM, 3*time.Second, false) })

	// Wait until it answers, over UDP and TCP.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var errs []error
		for _, network := range []string{"udp", "tcp"} {
			addrs, err := s.Lookup(WebName, network)
			if err == nil && len(addrs) == 1 && addrs[0] == WebIP {
				continue
			}
			errs = append(errs, fmt.Errorf("%s: %v %v", network, addrs, err))
		}
		if len(errs) == 0 {
			return nil
		}
		if p.exited() || time.Now().After(deadline) {
			return fmt.Errorf("dnsmasq not answering (%v); its log:\n%s", errors.Join(errs...), s.DNSLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Lookup resolves name (a fully qualified name) by asking the DNS service
// directly from inside the services namespace over network "udp" or "tcp".
func (s *Services) Lookup(name, network string) ([]string, error) {
	return LookupIn(s.NSPath, DNSIP+":53", network, name)
}

// LookupIn resolves name with Go's resolver against server, with sockets
// created in the network namespace at nsPath, over "udp" or "tcp".
func LookupIn(nsPath, server, network, name string) ([]string, error) {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var c net.Conn
			err := netns.Do(nsPath, unix.CLONE_NEWNET, func() error {
				var err error
				d := net.Dialer{Timeout: 2 * time.Second}
				c, err = d.DialContext(ctx, network, server)
				return err
			})
			return c, err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return r.LookupHost(ctx, name)
}

// DialIn opens a connection from inside the network namespace at nsPath.
func DialIn(nsPath, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(nsPath, unix.CLONE_NEWNET, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}
