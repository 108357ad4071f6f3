package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// requestIDs numbers port-forward stream pairs within this process.
var requestIDs atomic.Int64

// DialPod opens one port-forward stream to port of a pod through the API
// server and returns it as a net.Conn — no local listener. Like kubectl it
// tries SPDY tunnelled over WebSocket first and falls back to plain SPDY
// when the upgrade is refused (older API servers, some proxies).
func DialPod(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, ns, pod string, port int) (net.Conn, error) {
	url := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(url, cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward dialer: %w", err)
	}
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward dialer: %w", err)
	}
	plain := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, url)
	dialer := portforward.NewFallbackDialerForStreaming(ws, plain, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})
	type result struct {
		conn streamhttp.Connection
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		ch <- result{c, err}
	}()
	var conn streamhttp.Connection
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("port-forward to pod %s/%s: %w", ns, pod, r.err)
		}
		conn = r.conn
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("port-forward to pod %s/%s: %w", ns, pod, ctx.Err())
	}
	id := strconv.FormatInt(requestIDs.Add(1), 10)
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, id)
	errStream, err := conn.CreateStream(h)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to pod %s/%s: error stream: %w", ns, pod, err)
	}
	errStream.Close() // we never write to it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to pod %s/%s: data stream: %w", ns, pod, err)
	}
	pc := &pfConn{conn: conn, data: data, errDone: make(chan struct{}), name: fmt.Sprintf("%s/%s:%d", ns, pod, port)}
	go pc.readErrors(errStream)
	return pc, nil
}

// pfConn is one port-forward data stream as a net.Conn.
type pfConn struct {
	conn streamhttp.Connection
	data streamhttp.Stream
	name string

	errMu   sync.Mutex
	remote  error // what the kubelet reported on the error stream
	errDone chan struct{}
	once    sync.Once
}

func (c *pfConn) readErrors(s streamhttp.Stream) {
	defer close(c.errDone)
	b, err := io.ReadAll(s)
	if len(b) > 0 {
		c.errMu.Lock()
		c.remote = forwardError(strings.TrimSpace(string(b)))
		c.errMu.Unlock()
		c.data.Reset()
	} else if err != nil && !errors.Is(err, io.EOF) {
		_ = err
	}
}

// refusedError is the kubelet's report that nothing listens on the
// port in the pod: said short, and it is a syscall.ECONNREFUSED.
type refusedError struct{ msg string }

func (e *refusedError) Error() string {
	return "nothing listens on the port in the pod (connection refused; the kubelet said: " + e.msg + ")"
}

func (e *refusedError) Unwrap() error { return syscall.ECONNREFUSED }

// forwardError is the error for what the kubelet reported on a
// port-forward's error stream.
func forwardError(msg string) error {
	if strings.Contains(msg, "connection refused") {
		// "error forwarding port 7077 to pod ID, uid : failed to execute
		// portforward in network namespace ...: failed to connect to
		// localhost:7077 inside namespace ...: connection refused ..."
		if i := strings.Index(msg, "failed to connect to "); i >= 0 {
			msg = msg[i:]
			if j := strings.Index(msg, " inside namespace"); j >= 0 {
				msg = msg[:j]
			}
		}
		return &refusedError{msg: msg}
	}
	return errors.New(msg)
}

// remoteErr waits briefly for the error stream, which explains an EOF
// (e.g. "connection refused" when nothing listens on the port).
func (c *pfConn) remoteErr(err error) error {
	select {
	case <-c.errDone:
	case <-time.After(time.Second):
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.remote != nil {
		return fmt.Errorf("port-forward %s: %w", c.name, c.remote)
	}
	return err
}

func (c *pfConn) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if err != nil && n == 0 {
		err = c.remoteErr(err)
	}
	return n, err
}

func (c *pfConn) Write(b []byte) (int, error) {
	n, err := c.data.Write(b)
	if err != nil {
		err = c.remoteErr(err)
	}
	return n, err
}

func (c *pfConn) Close() error {
	c.once.Do(func() {
		c.data.Close()
		c.conn.Close()
	})
	return nil
}

// Done is closed when the underlying API server connection is gone.
func (c *pfConn) Done() <-chan bool { return c.conn.CloseChan() }

type pfAddr string

func (a pfAddr) Network() string { return "port-forward" }
func (a pfAddr) String() string  { return string(a) }

func (c *pfConn) LocalAddr() net.Addr  { return pfAddr("local") }
func (c *pfConn) RemoteAddr() net.Addr { return pfAddr(c.name) }

// Deadlines are not supported by port-forward streams; the mux above has
// its own keepalive and timeouts.
func (c *pfConn) SetDeadline(time.Time) error      { return nil }
func (c *pfConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pfConn) SetWriteDeadline(time.Time) error { return nil }
