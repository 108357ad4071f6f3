package httpframe

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// Response is what the passthrough needs of one response's head: where
// its body ends, so the next response on a keep-alive connection is
// found.
type Response struct {
	Status  int
	HeadLen int
	// Body is NoBody, Length, Chunked, Tunnel (101, or a 2xx to CONNECT)
	// or UntilClose.
	Body          BodyKind
	ContentLength int64
	// Interim: a 1xx other than 101 (100 Continue, 103 Early Hints):
	// the final response follows.
	Interim bool
	// Close: the server ends the connection after this response.
	Close bool
}

// UntilClose is a response body that ends when the server closes the
// connection (no length, not chunked).
const UntilClose BodyKind = Tunnel + 1

// ParseResponseHead parses the response head at the start of b, the
// answer to a request of method (RFC 9112 6.3 decides its body).
func ParseResponseHead(b []byte, method string) (*Response, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > MaxHead {
			return nil, bad("response head over %d bytes", MaxHead)
		}
		return nil, ErrIncomplete
	}
	head := b[:end]
	if err := crlfOnly(head); err != nil {
		return nil, err
	}
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	proto, status, ok := strings.Cut(string(line), " ")
	code, _, _ := strings.Cut(status, " ")
	n, err := strconv.Atoi(code)
	if !ok || (proto != "HTTP/1.1" && proto != "HTTP/1.0") || len(code) != 3 || err != nil || n < 100 {
		return nil, bad("status line %q", line)
	}
	// The fields, as a request's are read.
	fields := &Request{Header: http.Header{}}
	if len(head) > len(line) {
		if err := fields.parseFields(rest); err != nil {
			return nil, err
		}
	}
	h := fields.Header
	r := &Response{Status: n, HeadLen: end + 4}
	conn := tokens(h.Values("Connection"))
	r.Close = conn["close"] || (proto == "HTTP/1.0" && !conn["keep-alive"])
	switch {
	case n == http.StatusSwitchingProtocols:
		r.Body = Tunnel
		return r, nil
	case n < 200:
		r.Interim = true
		return r, nil
	case method == http.MethodConnect && n < 300:
		r.Body = Tunnel
		return r, nil
	case method == http.MethodHead || n == http.StatusNoContent || n == http.StatusNotModified:
		return r, nil // no body, whatever the headers say
	}
	te := h.Values("Transfer-Encoding")
	cl := h.Values("Content-Length")
	switch {
	case len(te) > 0:
		codings := strings.Split(strings.Join(te, ","), ",")
		if strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked") && proto == "HTTP/1.1" {
			r.Body = Chunked
		} else {
			r.Body, r.Close = UntilClose, true
		}
	case len(cl) > 0:
		var length int64 = -1
		for _, v := range cl {
			for _, part := range strings.Split(v, ",") {
				part = strings.TrimSpace(part)
				m, err := strconv.ParseInt(part, 10, 64)
				if err != nil || m < 0 || !allDigits(part) {
					return nil, bad("response Content-Length %q", v)
				}
				if length >= 0 && m != length {
					return nil, bad("response with two Content-Lengths, %d and %d", length, m)
				}
				length = m
			}
		}
		if length > 0 {
			r.Body, r.ContentLength = Length, length
		}
	default:
		r.Body, r.Close = UntilClose, true
	}
	return r, nil
}
