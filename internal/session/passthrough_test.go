package session

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUnmatchedPassedThrough: on a port stolen with a filter, requests
// no filter takes reach the app and come back byte for byte (not
// re-served: a header name keeps its case), pipelined ones too, on one
// app connection; the first request a filter takes, and the rest of its
// connection, go through the filtering router.
func TestUnmatchedPassedThrough(t *testing.T) {
	r := newIncomingRig(t)
	_, localSeen, _, err := r.session(t, "local", stealCfg("^x-tether-user: me$"))
	if err != nil {
		t.Fatal(err)
	}
	to := r.redir.Ports()[r.app.Port()]
	conn, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", to))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	// readAnswer reads one answer's head raw, and its body.
	readAnswer := func() (head, body string) {
		t.Helper()
		var h strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading an answer: %v (so far %q)", err, h.String())
			}
			h.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		// The head alone gives the body's length; the body comes from br
		// itself (a reader over br would take the next answer's bytes
		// too when they are already there).
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(h.String())), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength < 0 {
			t.Fatalf("an answer without Content-Length:\n%s", h.String())
		}
		b := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		return h.String(), string(b)
	}
	io.WriteString(conn, "GET /a HTTP/1.1\r\nHost: app\r\n\r\nGET /b HTTP/1.1\r\nHost: app\r\n\r\n")
	for _, p := range []string{"/a", "/b"} {
		head, body := readAnswer()
		if !strings.HasPrefix(body, "who=pod path="+p+" ") {
			t.Errorf("unmatched %s answered %q, want the app's", p, body)
		}
		if !strings.Contains(head, "\r\nx-raw-case: kept\r\n") {
			t.Errorf("unmatched %s: the answer was re-served, not passed through:\n%s", p, head)
		}
	}
	io.WriteString(conn, "GET /mine HTTP/1.1\r\nHost: app\r\nX-Tether-User: me\r\n\r\n")
	if _, body := readAnswer(); !strings.HasPrefix(body, "who=local path=/mine ") {
		t.Errorf("a taken request answered %q, want the session's", body)
	}
	io.WriteString(conn, "GET /c HTTP/1.1\r\nHost: app\r\n\r\n")
	if _, body := readAnswer(); !strings.HasPrefix(body, "who=pod path=/c ") {
		t.Errorf("an unmatched request after the hand-off answered %q, want the app's", body)
	}
	if got := localSeen.Paths(); len(got) != 1 {
		t.Errorf("the session saw %v, want only /mine", got)
	}
	if got := r.appSeen.Paths(); strings.Join(got, ",") != "/a,/b,/c" {
		t.Errorf("the app saw %v", got)
	}
}
