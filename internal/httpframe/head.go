// Package httpframe finds where HTTP/1.1 requests begin and end on a
// client connection, without serving them: the request head (method,
// target, headers) for routing, and the body's framing (Content-Length,
// chunked, an upgrade) so the bytes can be copied through unchanged to
// whoever the request is routed to. It is the agent's fast path for
// requests no filter takes. It refuses what a proxy must not guess at
// (both Content-Length and Transfer-Encoding, two lengths, bad
// characters): request smuggling lives in the differences between two
// parsers of one stream.
package httpframe

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// MaxHead is the largest request head accepted (net/http's default
// MaxHeaderBytes).
const MaxHead = 1 << 20

// ErrIncomplete says the buffer does not hold the whole head yet.
var ErrIncomplete = errors.New("httpframe: incomplete request head")

// BodyKind is how a request's body is framed.
type BodyKind int

const (
	// NoBody: the request ends with its head.
	NoBody BodyKind = iota
	// Length: Content-Length bytes follow the head.
	Length
	// Chunked: a chunked body follows (see Chunks).
	Chunked
	// Tunnel: after the head the connection is no longer HTTP/1.1 (an
	// upgrade, CONNECT): the bytes go both ways to whoever took the
	// request, until one side closes.
	Tunnel
)

func (k BodyKind) String() string {
	switch k {
	case NoBody:
		return "no body"
	case Length:
		return "content-length"
	case Chunked:
		return "chunked"
	case Tunnel:
		return "tunnel"
	case UntilClose:
		return "until close"
	}
	return fmt.Sprintf("BodyKind(%d)", int(k))
}

// Request is what routing needs of one request.
type Request struct {
	Method string
	// Target is the request-target as sent (/path?query, or an absolute
	// form); Path is its path.
	Target, Path string
	Proto        string // HTTP/1.0 or HTTP/1.1
	Header       http.Header
	// HeadLen is the head's length in bytes, its final blank line
	// included.
	HeadLen int
	Body    BodyKind
	// ContentLength is the body's length when Body is Length.
	ContentLength int64
	// ExpectContinue: the client waits for 100 Continue before it sends
	// the body.
	ExpectContinue bool
	// Close: the connection ends after this request (Connection: close,
	// or HTTP/1.0 without keep-alive).
	Close bool
}

// Error is a request no proxy should pass on: the client gets 400 and
// the connection is closed.
type Error struct{ Reason string }

func (e *Error) Error() string { return "httpframe: bad request: " + e.Reason }

func bad(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

// ParseHead parses the request head at the start of b. With no blank
// line yet it returns ErrIncomplete (or an Error once b is past MaxHead).
func ParseHead(b []byte) (*Request, error) {
	// Empty lines before a request line are ignored (RFC 9112 2.2): some
	// clients send a CRLF after a body.
	skip := 0
	for skip < 8 && bytes.HasPrefix(b[skip:], []byte("\r\n")) {
		skip += 2
	}
	r, err := parseHead(b[skip:])
	if err != nil {
		return nil, err
	}
	r.HeadLen += skip
	return r, nil
}

func parseHead(b []byte) (*Request, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > MaxHead {
			return nil, bad("head over %d bytes", MaxHead)
		}
		return nil, ErrIncomplete
	}
	if end+4 > MaxHead {
		return nil, bad("head over %d bytes", MaxHead)
	}
	head := b[:end]
	if err := crlfOnly(head); err != nil {
		return nil, err
	}
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	r := &Request{HeadLen: end + 4, Header: http.Header{}}
	if err := r.parseRequestLine(string(line)); err != nil {
		return nil, err
	}
	if len(head) > len(line) {
		if err := r.parseFields(rest); err != nil {
			return nil, err
		}
	}
	if err := r.frame(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Request) parseRequestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || strings.Contains(proto, " ") {
		return bad("request line %q", line)
	}
	if !validToken(method) {
		return bad("method %q", method)
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return bad("request target %q", target)
		}
	}
	switch proto {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		return bad("protocol %q (HTTP/1.0 or HTTP/1.1 only)", proto)
	}
	r.Method, r.Target, r.Proto = method, target, proto
	r.Path = target
	if i := strings.IndexByte(target, '?'); i >= 0 {
		r.Path = target[:i]
	}
	if rest, ok := strings.CutPrefix(r.Path, "http://"); ok {
		r.Path = pathOf(rest)
	} else if rest, ok := strings.CutPrefix(r.Path, "https://"); ok {
		r.Path = pathOf(rest)
	}
	return nil
}

// pathOf is the path of an absolute-form target without its scheme.
func pathOf(hostAndPath string) string {
	if i := strings.IndexByte(hostAndPath, '/'); i >= 0 {
		return hostAndPath[i:]
	}
	return "/"
}

func (r *Request) parseFields(b []byte) error {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte("\r\n"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return bad("obsolete line folding") // RFC 9112 5.2: reject
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || !validToken(string(name)) {
			return bad("header line %q", line)
		}
		v := string(bytes.Trim(value, " \t"))
		for i := 0; i < len(v); i++ {
			if c := v[i]; c == '\r' || c == '\n' || c == 0 {
				return bad("header %s: a control character", name)
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		r.Header[key] = append(r.Header[key], v)
	}
	return nil
}

// frame decides the body's framing from the headers (RFC 9112 6).
func (r *Request) frame() error {
	te := r.Header.Values("Transfer-Encoding")
	cl := r.Header.Values("Content-Length")
	conn := tokens(r.Header.Values("Connection"))
	r.Close = conn["close"] || (r.Proto == "HTTP/1.0" && !conn["keep-alive"])
	r.ExpectContinue = strings.EqualFold(r.Header.Get("Expect"), "100-continue")
	if len(te) > 0 && len(cl) > 0 {
		return bad("both Transfer-Encoding and Content-Length")
	}
	switch {
	case len(te) > 0:
		codings := strings.Split(strings.Join(te, ","), ",")
		last := strings.ToLower(strings.TrimSpace(codings[len(codings)-1]))
		if last != "chunked" || r.Proto == "HTTP/1.0" {
			return bad("Transfer-Encoding %q (a request's must end in chunked)", strings.Join(te, ", "))
		}
		for _, c := range codings[:len(codings)-1] {
			if strings.EqualFold(strings.TrimSpace(c), "chunked") {
				return bad("Transfer-Encoding %q: chunked twice", strings.Join(te, ", "))
			}
		}
		r.Body = Chunked
	case len(cl) > 0:
		var n int64 = -1
		for _, v := range cl {
			for _, part := range strings.Split(v, ",") {
				m, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
				if err != nil || m < 0 || !allDigits(strings.TrimSpace(part)) {
					return bad("Content-Length %q", v)
				}
				if n >= 0 && m != n {
					return bad("two Content-Lengths, %d and %d", n, m)
				}
				n = m
			}
		}
		if n > 0 {
			r.Body, r.ContentLength = Length, n
		}
	}
	if r.Method == http.MethodConnect || (conn["upgrade"] && r.Header.Get("Upgrade") != "") {
		if r.Body != NoBody && r.Method != http.MethodConnect {
			// An upgrade with a body: the body first, then the tunnel;
			// no client does it, and guessing is how proxies get fooled.
			return bad("an upgrade request with a body")
		}
		r.Body = Tunnel
	}
	return nil
}

// crlfOnly refuses a head with a bare LF or CR: net/http takes a bare LF
// for a line's end, and a proxy that did not would see other headers.
func crlfOnly(head []byte) error {
	for i, c := range head {
		switch {
		case c == '\n' && (i == 0 || head[i-1] != '\r'):
			return bad("a bare LF in the head")
		case c == '\r' && (i+1 == len(head) || head[i+1] != '\n'):
			return bad("a bare CR in the head")
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// tokens are the comma-separated tokens of a header's values, lower-cased.
func tokens(vs []string) map[string]bool {
	out := map[string]bool{}
	for _, v := range vs {
		for _, t := range strings.Split(v, ",") {
			if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
				out[t] = true
			}
		}
	}
	return out
}

// validToken reports whether s is an RFC 9110 token (a method, a field
// name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
