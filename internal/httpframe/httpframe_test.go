package httpframe

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		body     BodyKind
		length   int64
		close    bool
		expect   bool
		path     string
		err      string // "" ok, "incomplete", or a substring of the Error
	}{
		{"get", "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", NoBody, 0, false, false, "/a", ""},
		{"no headers", "GET / HTTP/1.1\r\n\r\n", NoBody, 0, false, false, "/", ""},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", NoBody, 0, false, false, "/", ""},
		{"post length", "POST /p HTTP/1.1\r\nContent-Length: 12\r\n\r\n", Length, 12, false, false, "/p", ""},
		{"length 0", "POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NoBody, 0, false, false, "/p", ""},
		{"same length twice", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", Length, 5, false, false, "/", ""},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Chunked, 0, false, false, "/", ""},
		{"expect", "PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", Length, 3, false, true, "/", ""},
		{"close", "GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", NoBody, 0, true, false, "/", ""},
		{"1.0 closes", "GET / HTTP/1.0\r\n\r\n", NoBody, 0, true, false, "/", ""},
		{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", NoBody, 0, false, false, "/", ""},
		{"websocket", "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", Tunnel, 0, false, false, "/ws", ""},
		{"h2c upgrade", "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n", Tunnel, 0, false, false, "/", ""},
		{"connect", "CONNECT db:5432 HTTP/1.1\r\n\r\n", Tunnel, 0, false, false, "db:5432", ""},
		{"absolute form", "GET http://x.example/a/b?c HTTP/1.1\r\n\r\n", NoBody, 0, false, false, "/a/b", ""},
		{"incomplete", "GET / HTTP/1.1\r\nHost: x\r\n", NoBody, 0, false, false, "", "incomplete"},
		{"both framings", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, false, false, "", "both"},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 0, 0, false, false, "", "two Content-Lengths"},
		{"signed length", "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 0, 0, false, false, "", "Content-Length"},
		{"not chunked last", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, 0, false, false, "", "must end in chunked"},
		{"chunked twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0, 0, false, false, "", "chunked twice"},
		{"chunked in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, false, false, "", "Transfer-Encoding"},
		{"bare LF", "GET / HTTP/1.1\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, false, false, "", "bare LF"},
		{"bare CR", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 0, 0, false, false, "", "bare CR"},
		{"folding", "GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n", 0, 0, false, false, "", "folding"},
		{"space before colon", "GET / HTTP/1.1\r\nX-A : 1\r\n\r\n", 0, 0, false, false, "", "header line"},
		{"bad method", "G(T / HTTP/1.1\r\n\r\n", 0, 0, false, false, "", "method"},
		{"HTTP/2", "GET / HTTP/2.0\r\n\r\n", 0, 0, false, false, "", "protocol"},
		{"upgrade with body", "POST / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 1\r\n\r\n", 0, 0, false, false, "", "upgrade request with a body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseHead([]byte(tc.in + "NEXT"))
			switch {
			case tc.err == "incomplete":
				if !errors.Is(err, ErrIncomplete) {
					t.Fatalf("err %v, want ErrIncomplete", err)
				}
				return
			case tc.err != "":
				var e *Error
				if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want an Error with %q", err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if r.HeadLen != len(tc.in) || r.Body != tc.body || r.ContentLength != tc.length || r.Close != tc.close || r.ExpectContinue != tc.expect || r.Path != tc.path {
				t.Fatalf("%+v", r)
			}
		})
	}
	r, _ := ParseHead([]byte("GET / HTTP/1.1\r\nx-tether-user: me\r\nX-Tether-User: you\r\n\r\n"))
	if got := r.Header.Values("X-Tether-User"); len(got) != 2 || got[0] != "me" {
		t.Errorf("headers %v", r.Header)
	}
	if _, err := ParseHead(bytes.Repeat([]byte("a"), MaxHead+1)); errors.Is(err, ErrIncomplete) || err == nil {
		t.Errorf("an endless head: %v, want an Error", err)
	}
}

func TestChunks(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		err        string
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", ""},
		{"extensions", "5;name=val\r\nhello\r\n0;x\r\n\r\n", ""},
		{"trailers", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", ""},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", ""},
		{"zeros", "000\r\n\r\n", ""},
		{"bad size", "x\r\n", "not a hex digit"},
		{"data too long", "2\r\nabc\r\n0\r\n\r\n", "longer than its size"},
		{"bare LF", "2\nab\r\n0\r\n\r\n", "chunk size line"},
		{"huge size", "1000000000000000\r\n", "15 hex digits"},
		{"bad trailer", "0\r\n X: y\r\n\r\n", "trailer line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.body + "NEXT"
			// Byte by byte and at once give the same.
			for _, step := range []int{len(in), 1, 3} {
				var c Chunks
				total, done := 0, false
				var err error
				for i := 0; i < len(in) && !done && err == nil; i += step {
					var n int
					n, done, err = c.Scan([]byte(in[i:min(i+step, len(in))]))
					total += n
				}
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("step %d: err %v, want %q", step, err, tc.err)
					}
					continue
				}
				if err != nil || !done || total != len(tc.body) {
					t.Fatalf("step %d: %d bytes, done %v, err %v; want %d", step, total, done, err, len(tc.body))
				}
			}
		})
	}
}

// FuzzParseHead: a head ParseHead accepts that net/http accepts too is
// framed the same way by both (a difference is request smuggling).
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseHead(b)
		if err != nil {
			return
		}
		if r.HeadLen > len(b) || !bytes.HasSuffix(b[:r.HeadLen], []byte("\r\n\r\n")) {
			t.Fatalf("HeadLen %d of %d bytes", r.HeadLen, len(b))
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:r.HeadLen])))
		if err != nil {
			return // net/http is stricter here (a missing Host...): the app refuses it
		}
		if req.Method != r.Method || req.RequestURI != r.Target {
			t.Fatalf("request line: net/http %s %s, ours %s %s", req.Method, req.RequestURI, r.Method, r.Target)
		}
		chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
		switch r.Body {
		case Chunked:
			if !chunked {
				t.Fatalf("ours chunked, net/http %v (length %d)", req.TransferEncoding, req.ContentLength)
			}
		case Length:
			if chunked || req.ContentLength != r.ContentLength {
				t.Fatalf("ours length %d, net/http %d %v", r.ContentLength, req.ContentLength, req.TransferEncoding)
			}
		case NoBody:
			if chunked || req.ContentLength > 0 {
				t.Fatalf("ours no body, net/http %d %v", req.ContentLength, req.TransferEncoding)
			}
		}
	})
}

// FuzzChunks: a chunked body Chunks says ended is one net/http decodes
// without error, and scanning it in pieces ends at the same byte.
func FuzzChunks(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "3;a=b\r\nabc\r\n0\r\nX: y\r\n\r\nGET", "0\r\n\r\n"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		var whole Chunks
		n, done, err := whole.Scan(b)
		var pieces Chunks
		k := int(step%16) + 1
		total, pdone := 0, false
		var perr error
		for i := 0; i < len(b) && !pdone && perr == nil; i += k {
			var m int
			m, pdone, perr = pieces.Scan(b[i:min(i+k, len(b))])
			total += m
		}
		if (err == nil) != (perr == nil) || done != pdone || (done && total != n) {
			t.Fatalf("at once: %d %v %v; in pieces of %d: %d %v %v", n, done, err, k, total, pdone, perr)
		}
		if !done {
			return
		}
		if _, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(b[:n]))); err != nil {
			t.Fatalf("net/http refuses a body we framed (%d bytes): %v", n, err)
		}
	})
}
