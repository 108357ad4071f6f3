package httpframe

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestParseResponseHead(t *testing.T) {
	for _, tc := range []struct {
		name, method, in string
		body             BodyKind
		length           int64
		interim, close   bool
		err              string
	}{
		{"length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Length, 5, false, false, ""},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Chunked, 0, false, false, ""},
		{"until close", "GET", "HTTP/1.1 200 OK\r\n\r\n", UntilClose, 0, false, true, ""},
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", NoBody, 0, false, false, ""},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", NoBody, 0, false, false, ""},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", NoBody, 0, false, false, ""},
		{"100", "PUT", "HTTP/1.1 100 Continue\r\n\r\n", NoBody, 0, true, false, ""},
		{"103", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", NoBody, 0, true, false, ""},
		{"101", "GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", Tunnel, 0, false, false, ""},
		{"connect", "CONNECT", "HTTP/1.1 200 Connection established\r\n\r\n", Tunnel, 0, false, false, ""},
		{"close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", Length, 1, false, true, ""},
		{"1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Length, 1, false, true, ""},
		{"not chunked last", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", UntilClose, 0, false, true, ""},
		{"two lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, 0, false, false, "two Content-Lengths"},
		{"bad status", "GET", "HTTP/1.1 2000 OK\r\n\r\n", 0, 0, false, false, "status line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseResponseHead([]byte(tc.in+"body"), tc.method)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.HeadLen != len(tc.in) || r.Body != tc.body || r.ContentLength != tc.length || r.Interim != tc.interim || r.Close != tc.close {
				t.Fatalf("%+v (body %v)", r, r.Body)
			}
		})
	}
}

// FuzzParseResponseHead: a response head both ParseResponseHead and
// net/http read is framed the same way by both.
func FuzzParseResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		r, err := ParseResponseHead(b, method)
		if err != nil || r.Interim || r.Body == Tunnel {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b[:r.HeadLen])), &http.Request{Method: method})
		if err != nil {
			return
		}
		chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
		switch r.Body {
		case Chunked:
			if !chunked {
				t.Fatalf("ours chunked, net/http %v %d", resp.TransferEncoding, resp.ContentLength)
			}
		case Length:
			if chunked || resp.ContentLength != r.ContentLength {
				t.Fatalf("ours length %d, net/http %d %v", r.ContentLength, resp.ContentLength, resp.TransferEncoding)
			}
		case UntilClose:
			if chunked || resp.ContentLength != -1 {
				t.Fatalf("ours until close, net/http %d %v", resp.ContentLength, resp.TransferEncoding)
			}
		case NoBody:
			if chunked && !head && resp.StatusCode != 204 && resp.StatusCode != 304 {
				t.Fatalf("ours no body, net/http chunked")
			}
			if n, _ := resp.Body.Read(make([]byte, 1)); n != 0 {
				t.Fatalf("ours no body, net/http has one")
			}
		}
	})
}
