// Command benchclient is the HTTP client of tether's Kubernetes benchmarks.
// The same static binary runs on every path that is compared: locally under
// `tether exec`, locally through `kubectl port-forward`, and inside a pod's
// network namespace (nsenter), so the client's own cost is the same on all
// of them. It times requests from inside the process: start-up costs do
// not blur per-request figures.
//
//	benchclient lat [-n N] [-warmup W] [-new] [-H 'K: V']... [-expect WHO] [-o FILE] URL
//	    N sequential GETs (after W unmeasured ones) on one keep-alive
//	    HTTP/1.1 connection, or each on a new connection with -new
//	    (connect + request + close). Prints
//	    "n=N min_us=A p50_us=B p99_us=C max_us=D"; -o writes every
//	    latency (ns, one a line) to FILE.
//	benchclient get [-expect WHO] URL
//	    one GET, body read to the end. Prints "bytes=N seconds=S mib_s=R".
//
// -expect fails the run when an answer's X-Who header differs (to check
// that a request was answered by the deployed app, or stolen).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchclient lat|get [flags] URL")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("benchclient "+os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 1000, "measured requests")
	warmup := fs.Int("warmup", 50, "unmeasured requests first")
	newConn := fs.Bool("new", false, "a new connection per request")
	expect := fs.String("expect", "", "required X-Who of every answer")
	out := fs.String("o", "", "file for every latency in ns, one a line")
	var hdrs headers
	fs.Var(&hdrs, "H", "request header 'Name: value' (repeatable)")
	fs.Parse(os.Args[2:])
	if fs.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "benchclient %s: want one URL\n", os.Args[1])
		os.Exit(2)
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || u.Scheme != "http" {
		fmt.Fprintf(os.Stderr, "benchclient: %q is not an http:// URL\n", fs.Arg(0))
		os.Exit(2)
	}
	c := &client{u: u, hdrs: hdrs, expect: *expect}
	switch os.Args[1] {
	case "lat":
		err = c.latencies(*n, *warmup, *newConn, *out)
	case "get":
		err = c.download()
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchclient: %v\n", err)
		os.Exit(1)
	}
}

type client struct {
	u      *url.URL
	hdrs   []string
	expect string

	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

func (c *client) addr() string {
	if c.u.Port() != "" {
		return c.u.Host
	}
	return net.JoinHostPort(c.u.Hostname(), "80")
}

func (c *client) dial() error {
	conn, err := net.DialTimeout("tcp", c.addr(), 10*time.Second)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", c.addr(), err)
	}
	c.conn, c.br, c.bw = conn, bufio.NewReaderSize(conn, 64<<10), bufio.NewWriter(conn)
	return nil
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends one GET on the current connection and reads the answer's
// head; the caller reads the body.
func (c *client) do(closeAfter bool) (*http.Response, error) {
	fmt.Fprintf(c.bw, "GET %s HTTP/1.1\r\nHost: %s\r\n", c.u.RequestURI(), c.u.Host)
	for _, h := range c.hdrs {
		fmt.Fprintf(c.bw, "%s\r\n", h)
	}
	if closeAfter {
		c.bw.WriteString("Connection: close\r\n")
	}
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return nil, fmt.Errorf("sending GET %s: %w", c.u, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the answer to GET %s: %w", c.u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: status %s", c.u, resp.Status)
	}
	if who := resp.Header.Get("X-Who"); c.expect != "" && who != c.expect {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s answered by %q, want %q", c.u, who, c.expect)
	}
	return resp, nil
}

// one times a whole request: its answer read to the end.
func (c *client) one(newConn bool) (time.Duration, error) {
	start := time.Now()
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return 0, err
		}
	}
	resp, err := c.do(newConn)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("reading the body of GET %s: %w", c.u, err)
	}
	if newConn || resp.Close {
		c.close()
	}
	return time.Since(start), nil
}

func (c *client) latencies(n, warmup int, newConn bool, out string) error {
	defer c.close()
	for range warmup {
		if _, err := c.one(newConn); err != nil {
			return err
		}
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		d, err := c.one(newConn)
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	if out != "" {
		var b strings.Builder
		for _, d := range lat {
			b.WriteString(strconv.FormatInt(d.Nanoseconds(), 10))
			b.WriteByte('\n')
		}
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("writing the latencies: %w", err)
		}
	}
	if n == 0 {
		return nil // a run for its cost without the measured requests
	}
	slices.Sort(lat)
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Nanoseconds())/1e3, 'f', 1, 64) }
	fmt.Printf("n=%d min_us=%s p50_us=%s p99_us=%s max_us=%s\n", n, us(lat[0]), us(lat[n/2]), us(lat[min(n-1, n*99/100)]), us(lat[n-1]))
	return nil
}

func (c *client) download() error {
	defer c.close()
	start := time.Now()
	if err := c.dial(); err != nil {
		return err
	}
	resp, err := c.do(true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := make([]byte, 256<<10)
	var total int64
	for {
		k, err := resp.Body.Read(buf)
		total += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the body of GET %s after %d bytes: %w", c.u, total, err)
		}
	}
	if resp.ContentLength >= 0 && total != resp.ContentLength {
		return fmt.Errorf("GET %s: %d bytes, want %d", c.u, total, resp.ContentLength)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("bytes=%d seconds=%.4f mib_s=%.2f\n", total, secs, float64(total)/(1<<20)/secs)
	return nil
}
