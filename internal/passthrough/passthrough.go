// Package passthrough carries a client's HTTP/1.1 connection to the app
// without serving it: each request's head is parsed (httpframe) to decide
// where it goes, and its bytes, and the app's answer's, are copied
// through unchanged. It is the agent's fast path on a port that sessions
// steal from with HTTP filters: requests no filter takes cost a parse
// and a copy, not a net/http server and reverse proxy. The first request
// a filter does take hands the connection, its unread bytes first, to
// the filtering router for the rest of its life.
package passthrough

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/tether-dev/tether/internal/httpfilter"
	"github.com/tether-dev/tether/internal/httpframe"
)

// bufSize is each direction's buffer: a head must fit in it (larger
// heads are refused with 431... by the app's own limit first).
const bufSize = 64 << 10

// Conn is one client connection on its way to the app.
type Conn struct {
	// Client is the client's connection.
	Client net.Conn
	// DialApp connects to the app (as the client: its address).
	DialApp func() (net.Conn, error)
	// Taken reports whether a session's filter takes the request.
	Taken func(httpfilter.Request) bool
	// Handoff gets the connection when a request is taken: its reads
	// start with that request's head. Serve returns after it.
	Handoff func(net.Conn)
	// Prefix is bytes already read from Client: they come first.
	Prefix []byte
	// Closing, when set and true as an answer is passed on, ends the
	// connection after that answer, which says so (Connection: close)
	// so that the client does not send another request on it.
	Closing func() bool
	// Copy, when set, is asked at each request that goes to the app for
	// a copy of it: the copy gets the request's bytes as they are sent
	// (for an upgrade, the client's bytes until it ends) and then End.
	// A nil Copy: not copied.
	Copy func(*httpframe.Request) Copy
	// Reset, when set, ends the client's connection when the app is gone
	// (it refused the connection, or reset it): as the kernel would
	// answer the client without a proxy in between, rather than with a
	// 502 or a plain close.
	Reset func()
}

// Serve carries the connection until it ends or is handed off. A
// request that cannot be framed safely gets a 400 and the connection is
// closed (a proxy that guesses is one a request can be smuggled past).
func (c *Conn) Serve() error {
	var src io.Reader = c.Client
	if len(c.Prefix) > 0 {
		src = io.MultiReader(bytes.NewReader(c.Prefix), c.Client)
	}
	br := bufio.NewReaderSize(src, bufSize)
	var app net.Conn
	var appR *bufio.Reader
	defer func() {
		if app != nil {
			app.Close()
		}
	}()
	for {
		req, err := readHead(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.Client.Close()
				return nil
			}
			var bad *httpframe.Error
			if errors.As(err, &bad) {
				io.WriteString(c.Client, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			}
			c.Client.Close()
			return err
		}
		if c.Taken != nil && c.Taken(filterRequest(req)) {
			// From this request on, the filtering router has it.
			c.Handoff(&bufferedConn{Conn: c.Client, r: br})
			return nil
		}
		if app == nil {
			if app, err = c.DialApp(); err != nil {
				if !c.reset(err) {
					io.WriteString(c.Client, "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
					c.Client.Close()
				}
				return fmt.Errorf("connecting to the app: %w", err)
			}
			appR = bufio.NewReaderSize(app, bufSize)
		}
		keep, err := c.exchange(req, br, app, appR)
		if err != nil || !keep {
			if !c.reset(err) {
				c.Client.Close()
			}
			return err
		}
	}
}

// Copy is a copy of one request (see Conn.Copy).
type Copy interface {
	io.Writer
	// End ends the copy: complete says whether all the request's bytes
	// were written.
	End(complete bool)
}

// copying is the app's connection as one request's bytes are written to
// it: each write goes to the copy too.
type copying struct {
	net.Conn
	cp Copy
}

func (w copying) Write(b []byte) (int, error) {
	n, err := w.Conn.Write(b)
	w.cp.Write(b[:n])
	return n, err
}

// CloseWrite half-closes the app's connection (the end of a tunnel).
func (w copying) CloseWrite() error {
	if cw, ok := w.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// reset resets the client's connection if err says the app is gone and
// Reset is set.
func (c *Conn) reset(err error) bool {
	if c.Reset == nil || !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)) {
		return false
	}
	c.Reset()
	return true
}

// readHead waits until a whole request head is buffered in br and
// parses it; its bytes stay in br, to be copied from there.
func readHead(br *bufio.Reader) (*httpframe.Request, error) {
	var req *httpframe.Request
	err := peekHead(br, func(b []byte) (err error) {
		req, err = httpframe.ParseHead(b)
		return err
	})
	return req, err
}

func readResponseHead(br *bufio.Reader, method string) (*httpframe.Response, error) {
	var resp *httpframe.Response
	err := peekHead(br, func(b []byte) (err error) {
		resp, err = httpframe.ParseResponseHead(b, method)
		return err
	})
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // an answer was due
	}
	return resp, err
}

// peekHead calls parse on what br holds until it has a whole head (parse
// does not say ErrIncomplete), reading more as needed. io.EOF: the
// connection ended between messages.
func peekHead(br *bufio.Reader, parse func([]byte) error) error {
	for {
		n := br.Buffered()
		if n > 0 {
			b, _ := br.Peek(n)
			if err := parse(b); !errors.Is(err, httpframe.ErrIncomplete) {
				return err
			}
		}
		if n >= bufSize {
			return &httpframe.Error{Reason: fmt.Sprintf("head over %d bytes", bufSize)}
		}
		if _, err := br.Peek(n + 1); err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF // in the middle of a head
			}
			return err
		}
	}
}

// filterRequest is what the filters see of req: what they would see of
// it served by net/http (a decoded path), so that no encoding of a path
// gets a request past a filter that the filtering router would apply.
func filterRequest(req *httpframe.Request) httpfilter.Request {
	q := ""
	if i := strings.IndexByte(req.Target, '?'); i >= 0 {
		q = req.Target[i+1:]
	}
	path := req.Path
	if strings.IndexByte(path, '%') >= 0 {
		if p, err := url.PathUnescape(path); err == nil {
			path = p
		}
	}
	return httpfilter.NewRequest(req.Method, path, q, req.Header)
}

// exchange sends one request to the app and its answer back. keep says
// whether the connection can carry another request.
func (c *Conn) exchange(req *httpframe.Request, clientR *bufio.Reader, app net.Conn, appR *bufio.Reader) (keep bool, err error) {
	if c.Copy != nil {
		if cp := c.Copy(req); cp != nil {
			// Complete when the exchange is: its success waits for the
			// request's last byte (a body copied while the answer came,
			// a tunnel's client side). A failed one may still write to
			// the app after End: the copy ignores it.
			keep, err = c.send(req, clientR, copying{Conn: app, cp: cp}, appR)
			cp.End(err == nil)
			return keep, err
		}
	}
	return c.send(req, clientR, app, appR)
}

// send is exchange, with app's writes maybe copied.
func (c *Conn) send(req *httpframe.Request, clientR *bufio.Reader, app net.Conn, appR *bufio.Reader) (keep bool, err error) {
	client := c.Client
	// The head, then the body, while the answer comes back (a 100
	// Continue, or an early answer, comes before the body is all sent).
	// A request already all buffered (a GET, a small body) is sent here:
	// no goroutine, one write.
	bodyDone := make(chan error, 1)
	if n, ok := buffered(clientR, req); ok {
		bodyDone <- copyN(app, clientR, nil, n)
	} else {
		go func() {
			if err := copyN(app, clientR, nil, int64(req.HeadLen)); err != nil {
				bodyDone <- err
				return
			}
			bodyDone <- copyBody(app, clientR, client, req)
		}()
	}
	if req.Body == httpframe.Tunnel {
		return false, tunnel(req, clientR, client, app, appR, bodyDone)
	}
	for {
		resp, err := readResponseHead(appR, req.Method)
		if err != nil {
			return false, fmt.Errorf("the app's answer: %w", err)
		}
		closing := !resp.Interim && c.Closing != nil && c.Closing()
		if n, ok := wholeAnswer(appR, resp); ok && !closing {
			// A small answer already all read (the common case): one
			// write, one segment, one wakeup of the client.
			if err := copyN(client, appR, nil, n); err != nil {
				return false, err
			}
		} else {
			if err := copyHead(client, appR, resp, closing); err != nil {
				return false, err
			}
			if resp.Interim {
				continue // the final answer follows
			}
			if err := copyResponseBody(client, appR, app, resp); err != nil {
				return false, err
			}
		}
		if resp.Interim {
			continue
		}
		// The request's body must be all sent for the next request to
		// start where it ends.
		if err := <-bodyDone; err != nil {
			return false, err
		}
		return !resp.Close && !req.Close && !closing, nil
	}
}

// buffered reports whether the whole request (head and body) is in r,
// and its length.
func buffered(r *bufio.Reader, req *httpframe.Request) (int64, bool) {
	n, ok := whole(r, req.HeadLen, req.Body, req.ContentLength)
	return n, ok && !req.ExpectContinue
}

// wholeAnswer reports whether the whole answer (head and body of a known
// length, or an interim answer's head) is in r, and its length.
func wholeAnswer(r *bufio.Reader, resp *httpframe.Response) (int64, bool) {
	return whole(r, resp.HeadLen, resp.Body, resp.ContentLength)
}

// whole reports whether a message of a head and a body of known length
// (none, or Content-Length) is all in r, and its length.
func whole(r *bufio.Reader, headLen int, body httpframe.BodyKind, contentLength int64) (int64, bool) {
	n := int64(headLen)
	switch body {
	case httpframe.NoBody:
	case httpframe.Length:
		n += contentLength
	default:
		return 0, false
	}
	return n, n <= int64(r.Buffered())
}

// copyHead copies an answer's head; closing adds Connection: close to it
// (a second Connection header is a list with the first: close wins).
func copyHead(w io.Writer, appR *bufio.Reader, resp *httpframe.Response, closing bool) error {
	if !closing || resp.Close {
		return copyN(w, appR, nil, int64(resp.HeadLen))
	}
	head, err := appR.Peek(resp.HeadLen)
	if err != nil {
		return err
	}
	// The head ends with its blank line (httpframe accepts CRLF only).
	if _, err := w.Write(append(head[:len(head)-2:len(head)-2], "Connection: close\r\n\r\n"...)); err != nil {
		return err
	}
	_, err = appR.Discard(resp.HeadLen)
	return err
}

// spliceMin is the rest of a body past which, once nothing of it is
// buffered, the kernel copies it from socket to socket (splice).
const spliceMin = 64 << 10

// copyN copies n bytes from r to w, straight from r's buffer; once that
// is empty, a long rest comes from src (r's own source) by splice when w
// and src are sockets.
func copyN(w io.Writer, r *bufio.Reader, src io.Reader, n int64) error {
	for n > 0 {
		if r.Buffered() == 0 {
			if src != nil && n >= spliceMin {
				_, err := io.CopyN(w, src, n)
				return err
			}
			if _, err := r.Peek(1); err != nil {
				return err
			}
		}
		b, _ := r.Peek(int(min(int64(r.Buffered()), n)))
		m, err := w.Write(b)
		r.Discard(m)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// copyBody copies req's body from r (over src) to w, as it is framed.
func copyBody(w io.Writer, r *bufio.Reader, src io.Reader, req *httpframe.Request) error {
	switch req.Body {
	case httpframe.Length:
		return copyN(w, r, src, req.ContentLength)
	case httpframe.Chunked:
		return copyChunked(w, r)
	}
	return nil
}

func copyResponseBody(w io.Writer, r *bufio.Reader, src io.Reader, resp *httpframe.Response) error {
	switch resp.Body {
	case httpframe.Length:
		return copyN(w, r, src, resp.ContentLength)
	case httpframe.Chunked:
		return copyChunked(w, r)
	case httpframe.UntilClose:
		_, err := io.Copy(w, r) // bufio's WriteTo: the buffer, then splice
		return err
	}
	return nil
}

// copyChunked copies a chunked body, unchanged, up to its end.
func copyChunked(w io.Writer, r *bufio.Reader) error {
	var ch httpframe.Chunks
	for {
		if _, err := r.Peek(1); err != nil {
			return err
		}
		b, _ := r.Peek(r.Buffered())
		n, done, err := ch.Scan(b)
		if _, werr := w.Write(b[:n]); werr != nil {
			return werr
		}
		r.Discard(n)
		if err != nil || done {
			return err
		}
	}
}

// tunnel carries an upgrade: the app's answer, then, if it switched
// protocols (101, or a 2xx to CONNECT), bytes both ways until they end.
func tunnel(req *httpframe.Request, clientR *bufio.Reader, client net.Conn, app net.Conn, appR *bufio.Reader, sent chan error) error {
	for {
		resp, err := readResponseHead(appR, req.Method)
		if err != nil {
			return fmt.Errorf("the app's answer to an upgrade: %w", err)
		}
		if _, err := io.CopyN(client, appR, int64(resp.HeadLen)); err != nil {
			return err
		}
		if resp.Interim {
			continue
		}
		if resp.Body != httpframe.Tunnel {
			// Refused: its body, and the connection ends (the client may
			// have sent bytes of the other protocol already).
			copyResponseBody(client, appR, app, resp)
			return nil
		}
		break
	}
	if err := <-sent; err != nil {
		return err
	}
	// Client → app: what the client's reader holds, then the socket.
	done := make(chan struct{})
	go func() {
		io.Copy(app, clientR)
		if cw, ok := app.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		close(done)
	}()
	io.Copy(client, appR)
	if cw, ok := client.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	<-done
	return nil
}

// bufferedConn is a connection whose reads start with what r buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite half-closes the connection when it can (a TCP one).
func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
